//! `scripts/release-check` refuses what would not start on a rack host: a binary that links
//! libibverbs (it must be loaded at run time) and one whose glibc symbols are newer than 2.34.
//! Both are built here with the host's C compiler (Debian 12: glibc 2.36, so the program needs
//! `__libc_start_main@GLIBC_2.34` and `stat@GLIBC_2.33`, checked against a 2.31 limit); skipped
//! without `cc` or `libibverbs-dev`. Likewise a binary that links libhwloc (live discovery loads
//! it at run time): linked against the run-time library itself (`-l:libhwloc.so.15`, no headers);
//! skipped without `cc` or libhwloc15, except under CI (which installs both), where it fails.

use std::path::Path;
use std::process::Command;

#[test]
fn release_check_refuses_a_linked_libibverbs_and_a_new_glibc() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("p.c");
    // stat() is GLIBC_2.33 on glibc 2.33+: above the 2.31 floor on any current build host.
    std::fs::write(
        &src,
        "#include <infiniband/verbs.h>\n#include <sys/stat.h>\nint main(int c, char **v) {\n\
         struct stat s; int n; if (c > 5) ibv_get_device_list(&n); return stat(v[0], &s);\n}\n",
    )
    .unwrap();
    let exe = dir.path().join("p");
    let built = match Command::new("cc").arg(&src).arg("-o").arg(&exe).arg("-libverbs").output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => return eprintln!("skipped: cc cannot link -libverbs: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => return eprintln!("skipped: no cc ({e})"),
    };
    assert!(built.status.success());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/release-check");
    // The limit at the build floor (2.31): the host's stat@GLIBC_2.33 and
    // __libc_start_main@GLIBC_2.34 are above it.
    let out = Command::new(&script).arg(&exe).env("GLIBC_MAX", "2.31").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("links libibverbs.so.1 (must be loaded at run time)"), "{stderr}");
    assert!(stderr.contains("it will not start on RHEL 9"), "{stderr}");
    assert!(stdout.contains("  libibverbs.so.1"), "the NEEDED list is printed: {stdout}");

    // The floor alone: with the limit raised past the host's glibc, only the library is refused.
    let out = Command::new(&script).arg(&exe).env("GLIBC_MAX", "9.99").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(!stderr.contains("RHEL 9") && stderr.contains("links libibverbs.so.1"), "{stderr}");
}

#[test]
fn release_check_refuses_a_linked_libhwloc() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("h.c");
    // The prototype from hwloc.h, so that no -dev package is needed.
    std::fs::write(
        &src,
        "unsigned hwloc_get_api_version(void);\nint main(void) { return hwloc_get_api_version() >> 16 != 2; }\n",
    )
    .unwrap();
    let exe = dir.path().join("h");
    let ci = std::env::var("CI").as_deref() == Ok("true");
    match Command::new("cc").arg(&src).arg("-o").arg(&exe).arg("-l:libhwloc.so.15").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) if !ci => return eprintln!("skipped: cc cannot link libhwloc.so.15: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) if !ci => return eprintln!("skipped: no cc ({e})"),
        other => panic!("CI has cc and libhwloc15 (scripts/setup): {other:?}"),
    }
    // It runs here (hwloc 2 is installed): what is refused is the link, not a broken program.
    assert!(Command::new(&exe).status().unwrap().success());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/release-check");
    let out = Command::new(&script).arg(&exe).env("GLIBC_MAX", "9.99").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("links libhwloc.so.15 (must be loaded at run time)"), "{stderr}");
    assert!(stdout.contains("  libhwloc.so.15"), "the NEEDED list is printed: {stdout}");
}
