//! A caller's supplementary groups, read from `/proc` for a pid the kernel reported.

/// The supplementary groups of process `pid` (from `/proc/PID/status`), provided the
/// process still runs as `uid`/`gid` (effective or filesystem ids): the pid comes from
/// the kernel (FUSE request header, SO_PEERCRED), but a pid can be reused once its
/// process exits, so a process of another user never lends its groups. None when the
/// process is gone or is someone else.
pub fn process_groups(pid: u32, uid: u32, gid: u32) -> Option<Vec<u32>> {
    if pid == 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_groups(&status, uid, gid)
}

fn parse_status_groups(status: &str, uid: u32, gid: u32) -> Option<Vec<u32>> {
    let ids = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Uid:/Gid: list real, effective, saved and filesystem ids.
    let runs_as = |list: Vec<u32>, id: u32| list.get(1) == Some(&id) || list.get(3) == Some(&id);
    if !runs_as(ids("Uid:"), uid) || !runs_as(ids("Gid:"), gid) {
        return None;
    }
    Some(ids("Groups:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_status_groups_count_only_for_the_same_user() {
        let status = "Name:\tsh\nUid:\t1005\t1005\t1005\t1005\nGid:\t1005\t1005\t1005\t1005\nGroups:\t2000 3000 \n";
        assert_eq!(
            parse_status_groups(status, 1005, 1005),
            Some(vec![2000, 3000])
        );
        assert_eq!(parse_status_groups(status, 1006, 1005), None);
        assert_eq!(parse_status_groups(status, 1005, 1006), None);
        let none = "Uid:\t7\t7\t7\t7\nGid:\t7\t7\t7\t7\nGroups:\t\n";
        assert_eq!(parse_status_groups(none, 7, 7), Some(vec![]));
        assert_eq!(process_groups(0, 0, 0), None);
        let me = process_groups(
            std::process::id(),
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        assert!(me.is_some());
    }
}
