//! Tests of the principals file: parsing, errors with lines, uid/gid resolution.
use super::*;

#[test]
fn single_user_maps_owner_and_root_to_account_root_and_others_to_anonymous() {
    let p = Principals::single_user(1000);
    assert_eq!(
        p.resolve(1000, 1000).principal.arn.as_deref(),
        Some("arn:aws:iam::111122223333:root")
    );
    assert_eq!(p.resolve(0, 0).kind, PrincipalKind::Root);
    let other = p.resolve(1001, 1001);
    assert_eq!(other.kind, PrincipalKind::Anonymous);
    assert_eq!(other.principal.arn, None);
}

#[test]
fn syntax_errors_name_the_file_and_line() {
    let err = Principals::parse(
        "account = \"111122223333\"\n[[principal]\n",
        "p.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("p.toml:"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let err = Principals::parse("acount = \"1\"\n", "p.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("acount"), "{err}");
}

#[test]
fn entries_are_validated_with_their_index_and_field() {
    let err = Principals::parse(
        "[[principal]]\narn = \"arn:aws:iam::111122223333:user/a\"\nuid = 5\n[[principal]]\narn = \"nope\"\n",
        "p.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("principal #2") && err.contains("field `arn`"),
        "{err}"
    );
    let err = Principals::parse(
        "[[principal]]\narn = \"arn:aws:iam::111122223333:user/a\"\nuid = 5\n[[principal]]\narn = \"arn:aws:iam::111122223333:user/b\"\nuids = [5]\n",
        "p.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("uid 5 is already mapped"), "{err}");
    let err = Principals::parse("account = \"12\"\n", "p.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.contains("field `account`"), "{err}");
}

#[test]
fn supplementary_groups_map_after_uid_primary_gid_and_root() {
    let p = Principals::parse(
        "account = \"111122223333\"\n\
         [[principal]]\narn = \"arn:aws:iam::111122223333:user/alice\"\nuid = 1001\n\
         [[principal]]\narn = \"arn:aws:iam::111122223333:role/ops\"\ngid = 2000\n\
         [[principal]]\narn = \"arn:aws:iam::111122223333:role/ci\"\ngids = [3000]\n",
        "p.toml",
        Path::new("."),
    )
    .unwrap();
    let arn = |r: ResolvedPrincipal| r.principal.arn.unwrap_or_default();
    let role = |n: &str| format!("arn:aws:iam::111122223333:role/{n}");
    // (uid, primary gid, supplementary groups, expected ARN or "" for anonymous)
    let table: &[(u32, u32, &[u32], String)] = &[
        (1005, 1005, &[3000], role("ci")),
        (1005, 1005, &[2000, 3000], role("ops")),
        (1005, 1005, &[3000, 2000], role("ops")),
        (1005, 3000, &[2000], role("ci")),
        (
            1001,
            1001,
            &[2000],
            "arn:aws:iam::111122223333:user/alice".into(),
        ),
        (0, 0, &[2000], "arn:aws:iam::111122223333:root".into()),
        (1005, 1005, &[4000], String::new()),
    ];
    for (uid, gid, groups, want) in table {
        let got = arn(p.resolve_with_groups(*uid, *gid, || groups.to_vec()));
        assert_eq!(&got, want, "uid {uid} gid {gid} groups {groups:?}");
    }
    // Without gid mappings the groups are never asked for.
    let plain = Principals::parse(
        "[[principal]]\narn = \"arn:aws:iam::111122223333:user/a\"\nuid = 5\n",
        "p.toml",
        Path::new("."),
    )
    .unwrap();
    let r = plain.resolve_with_groups(6, 6, || panic!("groups read without gid mappings"));
    assert_eq!(r.kind, PrincipalKind::Anonymous);
}

#[test]
fn missing_policy_files_are_named_with_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("kmsfs-principals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("principals.toml");
    std::fs::write(
        &file,
        "account = \"111122223333\"\n\n[[principal]]\narn = \"arn:aws:iam::111122223333:user/alice\"\nuid = 1001\npolicies = [\n  \"policies/key-user.json\",\n]\n",
    )
    .unwrap();
    let err = Principals::load(&file).unwrap_err().to_string();
    let _ = std::fs::remove_dir_all(&dir);
    let want = format!("{}:7: principal #1", file.display());
    assert!(err.starts_with(&want), "{err}");
    assert!(err.contains("field `policies`"), "{err}");
    assert!(
        err.contains(&dir.join("policies/key-user.json").display().to_string()),
        "{err}"
    );
    let inline = Principals::parse(
        "[[principal]]\narn = \"arn:aws:iam::111122223333:user/a\"\n\npolicy = \"{ nope\"\n",
        "p.toml",
        Path::new("."),
    )
    .unwrap_err()
    .to_string();
    assert!(inline.starts_with("p.toml:4: principal #1"), "{inline}");
    assert!(inline.contains("field `policy`"), "{inline}");
}

#[test]
fn a_principal_without_uid_or_gid_is_reachable_only_by_arn() {
    let p = Principals::parse(
        r#"[[principal]]
arn = "arn:aws:iam::111122223333:user/ci"
policy = '''{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}'''
"#,
        "p.toml",
        Path::new("."),
    )
    .unwrap();
    let ci_arn = "arn:aws:iam::111122223333:user/ci";
    let listed: Vec<_> = p.listed().collect();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].1.is_empty() && listed[0].2.is_empty());
    // No uid or gid resolves to it...
    for uid in [0, 1000, u32::MAX] {
        assert_ne!(p.resolve(uid, uid).principal.arn.as_deref(), Some(ci_arn));
    }
    // ...but its ARN does, with its policies and without ids.
    let ci = p.listed_by_arn(ci_arn).unwrap();
    assert_eq!(ci.kind, PrincipalKind::User);
    assert_eq!(ci.identity_policies.len(), 1);
    assert_eq!((ci.principal.uid, ci.principal.gid), (None, None));
    assert_eq!(
        p.listed_by_arn("arn:aws:iam::111122223333:root")
            .map(|r| r.kind),
        Some(PrincipalKind::Root)
    );
    assert!(p
        .listed_by_arn("arn:aws:iam::111122223333:user/ghost")
        .is_none());
}

#[test]
fn uid_wins_over_gid_and_uid_zero_is_root_unless_listed() {
    let p = Principals::parse(
        "account = \"111122223333\"\n\
         [[principal]]\narn = \"arn:aws:iam::111122223333:user/alice\"\nuid = 1001\n\
         [[principal]]\narn = \"arn:aws:iam::111122223333:role/ops\"\ngid = 2000\n",
        "p.toml",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(
        p.resolve(1001, 2000).principal.arn.as_deref(),
        Some("arn:aws:iam::111122223333:user/alice")
    );
    assert_eq!(
        p.resolve(1005, 2000).principal.arn.as_deref(),
        Some("arn:aws:iam::111122223333:role/ops")
    );
    assert_eq!(p.resolve(0, 0).kind, PrincipalKind::Root);
    assert_eq!(p.resolve(1005, 1005).kind, PrincipalKind::Anonymous);
    let listed = Principals::parse(
        "[[principal]]\narn = \"arn:aws:iam::111122223333:user/admin\"\nuid = 0\n",
        "p.toml",
        Path::new("."),
    )
    .unwrap();
    assert_eq!(listed.resolve(0, 0).kind, PrincipalKind::User);
}

#[test]
fn aws_profile_names_a_profile_of_the_files_next_to_the_principals_file() {
    let text = "aws_config_file = \"aws/config\"\n\
                aws_credentials_file = \"aws/credentials\"\n\
                [[principal]]\n\
                arn = \"arn:aws:iam::111122223333:user/alice\"\n\
                uid = 1001\n\
                aws_profile = \"alice\"\n\
                [[principal]]\n\
                arn = \"arn:aws:iam::111122223333:user/bob\"\n\
                uid = 1002\n";
    let p = Principals::parse(text, "p.toml", Path::new("/etc/kmsfs")).unwrap();
    let alice = p
        .resolve(1001, 1001)
        .aws_profile
        .expect("alice has a profile");
    assert_eq!(alice.name, "alice");
    assert_eq!(
        alice.config_file.as_deref(),
        Some(Path::new("/etc/kmsfs/aws/config"))
    );
    assert_eq!(
        alice.credentials_file.as_deref(),
        Some(Path::new("/etc/kmsfs/aws/credentials"))
    );
    assert_eq!(p.resolve(1002, 1002).aws_profile, None, "bob has none");
    assert_eq!(p.resolve(0, 0).aws_profile, None, "unlisted root has none");
    assert_eq!(
        p.resolve(4242, 4242).aws_profile,
        None,
        "anonymous has none"
    );
}

#[test]
fn a_malformed_aws_profile_is_refused_with_its_line() {
    let text = "[[principal]]\narn = \"arn:aws:iam::111122223333:user/alice\"\nuid = 1\naws_profile = \"\"\n";
    let err = Principals::parse(text, "p.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("p.toml:4:"), "{err}");
    assert!(err.contains("aws_profile"), "{err}");
}
