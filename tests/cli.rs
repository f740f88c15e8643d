//! The command line as a supervisor or a script sees it: one test per exit code of the
//! README's table, each running the real binary into a situation that produces it; a full
//! disk reported as such; the shell completions and the manual page generated from the
//! command definitions.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, fixture, s, zvfs};

fn sample_fl() -> PathBuf {
    fixture("rfs-v2").join("sample.fl")
}

/// (exit code, stdout, stderr) of a zvfs run.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = zvfs(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small tree packed into a dir store: (flist, store dir).
fn packed(t: &Path) -> (PathBuf, PathBuf) {
    let tree = t.join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(tree.join("sub/data.bin"), common::noise(3, 100_000)).unwrap();
    let fl = t.join("a.fl");
    let store = t.join("store");
    common::pack(&fl, &common::dir_url(&store), &[], &tree);
    (fl, store)
}

#[test]
fn exit_0_on_success() {
    let (code, out, err) = run(&["inspect", "-m", s(&sample_fl())]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.is_empty());
    let t = tempfile::tempdir().unwrap();
    let (fl, _) = packed(t.path());
    let (code, out, err) = run(&["cat", "-m", s(&fl), "/hello.txt"]);
    assert_eq!((code, out.as_str()), (Some(0), "hello\n"), "{err}");
    // --help and --version print to stdout and succeed.
    for flag in ["--help", "--version"] {
        let (code, out, _) = run(&[flag]);
        assert_eq!(code, Some(0), "{flag}");
        assert!(out.contains("zvfs"), "{flag}: {out}");
    }
}

#[test]
fn exit_1_on_failure() {
    let t = tempfile::tempdir().unwrap();
    // A path the flist does not have.
    let (code, out, err) = run(&["cat", "-m", s(&sample_fl()), "/no/such/file"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty() && err.contains("/no/such/file"), "{err}");
    // A file that is not an flist: a format error, exit 1.
    let junk = t.path().join("junk.fl");
    std::fs::write(&junk, vec![b'j'; 8192]).unwrap();
    let (code, _, err) = run(&["inspect", "-m", s(&junk)]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(s(&junk)) && err.contains("not an flist"),
        "{err}"
    );
    // A missing flist.
    let (code, _, err) = run(&["ls", "-m", "/nonexistent/x.fl", "/"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/nonexistent/x.fl"), "{err}");
}

#[test]
fn exit_2_on_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let (fl, _) = packed(t.path());
    for (args, why) in [
        (vec!["inspect", "--no-such-flag"], "unexpected argument"),
        (vec!["no-such-command"], "unrecognized subcommand"),
        (vec!["cat", "-m", s(&fl)], "required"),
        (
            vec!["cat", "-m", s(&fl), "-s", "nosuch://x", "/hello.txt"],
            "nosuch://x",
        ),
        // Parsed, but a request that cannot be carried out as given (ErrorKind::Invalid).
        (vec!["cat", "-m", s(&fl), "/sub"], "not a regular file"),
    ] {
        let (code, out, err) = run(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}

/// A store that cannot be reached: the flist and the command are fine, a retry may work.
#[test]
fn exit_75_when_a_store_is_unreachable() {
    let t = tempfile::tempdir().unwrap();
    let (fl, _) = packed(t.path());
    let dead = format!("zdb://127.0.0.1:{}", common::free_port());
    let (code, out, err) = run(&[
        "cat",
        "-m",
        s(&fl),
        "-s",
        &dead,
        "--connect-timeout",
        "1",
        "--deadline",
        "3",
        "/sub/data.bin",
    ]);
    assert_eq!(code, Some(75), "{err}");
    assert!(out.is_empty(), "printed {} bytes", out.len());
    assert!(err.contains(&dead) && err.contains("chunk"), "{err}");
    // The chunks gone from the only store: still a store failure, 75.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = run(&[
        "cat",
        "-m",
        s(&fl),
        "-s",
        &common::dir_url(&empty),
        "/sub/data.bin",
    ]);
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("missing from every store"), "{err}");
    // diff keeps diff(1)'s 2 for any trouble, a store failure included.
    let other = t.path().join("b.fl");
    std::fs::copy(&fl, &other).unwrap();
    let (code, _, err) = run(&["diff", s(&fl), s(&other)]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&["diff", s(&fl), "/nonexistent/b.fl"]);
    assert_eq!(code, Some(2), "{err}");
}

/// `zvfs --help` points at the exit codes; the table in the help text is the README's.
#[test]
fn help_lists_the_exit_codes() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("Exit codes:"), "{out}");
    for line in [
        "  0   success",
        "  1   failure",
        "  2   usage",
        "  75  temporary",
    ] {
        assert!(out.contains(line), "{line:?} missing: {out}");
    }
}

/// A tmpfs of `size` on `dir` (root only), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(st.success(), "mounting a tmpfs on {}", dir.display());
        Some(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Packing an flist onto a full disk says the disk is full (SQLite's SQLITE_FULL is an I/O
/// error, ENOSPC), names the flist, and leaves nothing behind.
#[test]
fn pack_onto_a_full_disk_reports_it() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    // Enough entries that the metadata cannot fit in 64 KiB.
    for i in 0..1500 {
        std::fs::write(tree.join(format!("file-with-a-long-name-{i:05}.txt")), b"").unwrap();
    }
    let small = t.path().join("small");
    let Some(_fs) = Tmpfs::mount(&small, "64k") else {
        return;
    };
    let fl = small.join("a.fl");
    let store = common::dir_url(&t.path().join("store"));
    let (code, out, err) = run(&["pack", "-m", s(&fl), "-s", &store, s(&tree)]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("disk is full") || err.contains("No space left"),
        "{err}"
    );
    assert!(err.contains(s(&small)), "names the flist: {err}");
    assert!(!err.contains("malformed"), "{err}");
    assert_eq!(std::fs::read_dir(&small).unwrap().count(), 0, "a leftover");
}

/// `zvfs completions SHELL` for every shell clap_complete knows; the bash script is valid
/// bash and completes every subcommand and the shared flags.
#[test]
fn completion_scripts_cover_every_command() {
    let subcommands = subcommands();
    assert!(subcommands.len() > 15, "{subcommands:?}");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = run(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {err}");
        for sub in &subcommands {
            assert!(out.contains(sub.as_str()), "{shell}: no {sub}");
        }
        assert!(out.contains("meta"), "{shell}: no --meta");
    }
    let (_, bash, _) = run(&["completions", "bash"]);
    for flag in ["--meta", "--store", "--cache", "--deadline", "--debug"] {
        assert!(bash.contains(flag), "bash: no {flag}");
    }
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &bash).unwrap();
    let out = Command::new("bash")
        .arg("-n")
        .arg(script.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sourced, it registers the completion function for zvfs.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p zvfs", s(script.path())))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("zvfs"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_eq!(code, Some(2), "{err}");
}

/// The subcommands `zvfs --help` lists.
fn subcommands() -> Vec<String> {
    let (_, help, _) = run(&["--help"]);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Render roff with groff (man macros) to text; `None` when groff is not installed.
/// groff's verdict on a man page (scripts/test.sh installs groff-base: never skipped).
fn groff(page: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("groff is missing (scripts/test.sh installs groff-base)");
    child.stdin.take().unwrap().write_all(page).unwrap();
    child.wait_with_output().unwrap()
}

/// `zvfs man` prints zvfs(1); `zvfs man DIR` writes it and a page per subcommand, as a
/// package installs them into man1. groff renders them without a warning.
#[test]
fn man_pages_are_generated_from_the_commands() {
    let (code, page, err) = run(&["man"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        page.starts_with(".ie") || page.contains("\n.TH zvfs 1"),
        "{page}"
    );
    assert!(page.contains(".TH zvfs 1"), "{page}");
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "no {section}");
    }
    assert!(page.contains("Exit codes"), "the exit codes are in zvfs(1)");
    for sub in subcommands() {
        assert!(
            page.contains(&format!("zvfs\\-{sub}(1)")),
            "no zvfs-{sub}(1)"
        );
    }
    {
        let out = groff(page.as_bytes());
        assert!(out.status.success(), "groff failed");
        assert!(
            out.stderr.is_empty(),
            "groff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man1");
    std::fs::create_dir(&dir).unwrap();
    let (code, out, err) = run(&["man", s(&dir)]);
    assert_eq!((code, out.as_str()), (Some(0), ""), "{err}");
    let written = std::fs::read(dir.join("zvfs.1")).unwrap();
    assert_eq!(String::from_utf8_lossy(&written), page);
    for sub in subcommands() {
        let p = dir.join(format!("zvfs-{sub}.1"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("no {}", p.display()));
        assert!(
            text.contains(&format!(".TH zvfs-{sub} 1")),
            "{}",
            p.display()
        );
    }
    let pack = std::fs::read_to_string(dir.join("zvfs-pack.1")).unwrap();
    assert!(pack.contains("\\-\\-meta"), "zvfs-pack(1) documents --meta");
    // Nested subcommands get their pages too.
    assert!(dir.join("zvfs-config-tag.1").exists() || dir.join("zvfs-cache-fsck.1").exists());
    // A directory that cannot be written: exit 1, naming it.
    let (code, _, err) = run(&["man", "/nonexistent/man1"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/nonexistent/man1"), "{err}");
}

/// Run zvfs with its stdout a pipe whose reader is already gone (as in `zvfs ls | head`
/// once head exited): (exit code, stderr).
fn run_into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(common::zvfs_bin())
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_pipe_ends_every_command_quietly() {
    let t = tempfile::tempdir().unwrap();
    let (fl, store) = packed(t.path());
    // A second flist that differs, a big enough file for several writes, a cache.
    let tree = t.path().join("tree");
    std::fs::write(tree.join("big.bin"), common::noise(9, 3 << 20)).unwrap();
    let fl2 = t.path().join("b.fl");
    common::pack(&fl2, &common::dir_url(&store), &[], &tree);
    let cache = t.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let sample = sample_fl();
    let big = tree.join("big.bin");
    let (fl3, store_url) = (t.path().join("c.fl"), common::dir_url(&store));
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["--help"], 0),
        (vec!["--version"], 0),
        (vec!["pack", "--help"], 0),
        (vec!["pack", "-m", s(&fl3), "-s", &store_url, s(&tree)], 0),
        (vec!["verify", "-m", s(&fl2)], 0),
        (vec!["inspect", "-m", s(&fl2)], 0),
        (vec!["ls", "-l", "-m", s(&fl2), "/"], 0),
        (vec!["stat", "-m", s(&fl2), "/big.bin"], 0),
        (vec!["cat", "-m", s(&fl2), "/big.bin"], 0),
        (vec!["diff", s(&fl), s(&fl2)], 1),
        (vec!["dedup", s(&fl), s(&fl2)], 0),
        (vec!["identity", s(&big)], 0),
        (vec!["config", "-m", s(&sample), "tag", "list"], 0),
        (vec!["config", "-m", s(&sample), "store", "list"], 0),
        (vec!["cache", "stats", "-c", s(&cache)], 0),
        (vec!["mounts"], 0),
        (vec!["completions", "bash"], 0),
        (vec!["man"], 0),
    ];
    for (args, want) in cases {
        let (code, err) = run_into_closed_pipe(&args);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(code, Some(want), "{args:?}: {err}");
        assert!(
            !err.contains("Broken pipe") && !err.contains("error"),
            "{args:?} complained: {err}"
        );
    }
    // The pack whose summary went nowhere still wrote its flist.
    assert!(fl3.is_file());
}
