//! `mount.kmsfs`: the helper mount(8) runs for `/etc/fstab` entries of type `kmsfs`:
//!
//! ```text
//! /srv/secret.enc  /mnt/secret  kmsfs  allow_other,default_permissions,store=/var/lib/kmsfs,nofail  0 0
//! ```
//!
//! mount(8) calls `mount.kmsfs SOURCE DIR [-sfnv] [-o OPTIONS]`; this translates that
//! into `kmsfs mount SOURCE DIR -o ...`. kmsfs's own settings ride in the options
//! (`store=`, `principals=`, `socket=`, `passphrase_file=`, `root_key=`, `key=`,
//! `threads=`); options that are for mount(8) or systemd only (`defaults`, `auto`,
//! `noauto`, `user`, `users`, `nofail`, `_netdev`, `x-*`, `comment=*`, `rw`) are dropped.

use std::ffi::OsString;

/// Options mount(8) or systemd consume themselves; never passed to the kernel.
fn is_mount8_only(opt: &str) -> bool {
    matches!(
        opt,
        "defaults" | "auto" | "noauto" | "user" | "nouser" | "users" | "nofail" | "_netdev" | "rw"
    ) || opt.starts_with("x-")
        || opt.starts_with("comment=")
}

/// Translates `mount.kmsfs` arguments (without argv[0]) into `kmsfs` arguments.
pub fn translate(args: &[OsString]) -> Result<Vec<OsString>, String> {
    let mut positional: Vec<OsString> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "-o" {
            let v = it.next().ok_or("mount.kmsfs: -o needs a value")?;
            options.extend(v.to_string_lossy().split(',').map(str::to_string));
        } else if let Some(v) = s.strip_prefix("-o") {
            options.extend(v.split(',').map(str::to_string));
        } else if s.starts_with('-') {
            // -s (sloppy), -f (fake), -n (no mtab), -v (verbose): nothing to do for us,
            // except -f which means "do not actually mount".
            if s.contains('f') {
                return Ok(Vec::new());
            }
        } else {
            positional.push(a.clone());
        }
    }
    let [source, dir] = positional.as_slice() else {
        return Err("usage: mount.kmsfs BACKING MOUNTPOINT [-o options]".into());
    };
    let mut global: Vec<OsString> = Vec::new();
    let mut mount_opts: Vec<String> = Vec::new();
    let mut extra: Vec<OsString> = Vec::new();
    for opt in options.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
        if is_mount8_only(opt) {
            continue;
        }
        let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
        match k {
            "store" | "principals" | "socket" => {
                global.push(format!("--{k}").into());
                global.push(v.into());
            }
            "passphrase_file" => {
                global.push("--passphrase-file".into());
                global.push(v.into());
            }
            "root_key" => {
                global.push("--root-key-file".into());
                global.push(v.into());
            }
            "threads" => {
                extra.push("--threads".into());
                extra.push(v.into());
            }
            _ => mount_opts.push(opt.to_string()),
        }
    }
    let mut out: Vec<OsString> = vec!["kmsfs".into()];
    out.extend(global);
    out.push("mount".into());
    out.push(source.clone());
    out.push(dir.clone());
    if !mount_opts.is_empty() {
        out.push("-o".into());
        out.push(mount_opts.join(",").into());
    }
    out.extend(extra);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> Vec<String> {
        let a: Vec<OsString> = args.iter().map(OsString::from).collect();
        translate(&a)
            .unwrap()
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn fstab_options_become_kmsfs_flags_and_mount8_options_are_dropped() {
        assert_eq!(
            t(&[
                "/srv/b",
                "/mnt/m",
                "-o",
                "rw,allow_other,store=/var/lib/kmsfs,nofail,x-systemd.automount,key=alias/x,threads=2"
            ]),
            [
                "kmsfs",
                "--store",
                "/var/lib/kmsfs",
                "mount",
                "/srv/b",
                "/mnt/m",
                "-o",
                "allow_other,key=alias/x",
                "--threads",
                "2"
            ]
        );
    }

    #[test]
    fn fake_mounts_do_nothing_and_bad_usage_is_explained() {
        assert!(t(&["/srv/b", "/mnt/m", "-f"]).is_empty());
        let a: Vec<OsString> = vec!["/only-one".into()];
        assert!(translate(&a).unwrap_err().contains("usage"));
    }
}
