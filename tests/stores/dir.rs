//! The dir store's two layouts: new stores are flat (as released rfs writes them) unless
//! `?layout=sharded` is asked; an existing store keeps its layout; both read back.

use std::path::Path;

use crate::common::*;

// ---------------------------------------------------------------- dir store layouts

/// Objects of a dir store: (directly at its top: flat, in `<hh>` directories: sharded).
fn objects_by_layout(store: &Path) -> (usize, usize) {
    let (mut flat, mut sharded) = (0, 0);
    for e in std::fs::read_dir(store).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if e.file_type().unwrap().is_dir() {
            assert_eq!(name.len(), 2, "{name} in {}", store.display());
            for o in std::fs::read_dir(e.path()).unwrap() {
                let o = o.unwrap().file_name().into_string().unwrap();
                if o.len() == 64 && o.starts_with(&name) {
                    sharded += 1;
                }
            }
        } else if name.len() == 64 {
            flat += 1;
        }
    }
    (flat, sharded)
}

/// Copy the objects of a sharded store into `dst` flat, as released rfs writes them.
fn flat_copy(sharded: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(sharded).unwrap() {
        for o in std::fs::read_dir(e.unwrap().path()).unwrap() {
            let o = o.unwrap();
            std::fs::copy(o.path(), dst.join(o.file_name())).unwrap();
        }
    }
}

#[test]
fn new_dir_stores_are_flat_unless_asked_and_both_layouts_read_back() {
    let d = tmp();
    let tree = fixture_tree(d.path());
    for (i, (query, want)) in [
        ("", (56, 0)),
        ("?layout=flat", (56, 0)),
        ("?layout=sharded", (0, 56)),
    ]
    .into_iter()
    .enumerate()
    {
        let store = d.path().join(format!("store{i}"));
        let url = format!("{}{query}", dir_url(&store));
        let fl = d.path().join(format!("t{i}.fl"));
        run_ok(&["pack", "-m", s(&fl), "-s", &url, s(&tree)]);
        assert_eq!(objects_by_layout(&store), want, "{url}");
        // The route recorded in the flist keeps the layout, and reads back through it.
        let (inspect, _) = run_ok(&["inspect", "-m", s(&fl)]);
        assert!(inspect.contains(&url), "{url} not in {inspect}");
        let target = d.path().join(format!("out{i}"));
        run_ok(&["unpack", "-m", s(&fl), "-p", s(&target)]);
        assert_same_tree(&tree, &target);
        let (hello, _) = run_ok(&["cat", "-m", s(&fl), "hello.txt"]);
        assert_eq!(hello, "hello world\n");
    }
    let err = run_fails(
        2,
        &pack_args(
            &d.path().join("bad.fl"),
            Path::new("/nonexistent/s?layout=nested"),
            &[],
            &tree,
        ),
    );
    assert!(err.contains("layout") && err.contains("nested"), "{err}");
}

#[test]
fn an_existing_store_keeps_its_layout_and_rfs_stores_of_both_layouts_read() {
    let d = tmp();
    let reference = fixture_tree(d.path());
    // The fixture store is sharded (`<hh>/<hex>`): it reads, and a pack into it without
    // `?layout` adds sharded objects.
    let sharded = store_copy(d.path());
    assert_eq!(objects_by_layout(&sharded), (0, 56));
    let out = d.path().join("out");
    unpack_sample(&sharded, &["-p", s(&out)]);
    assert_same_tree(&reference, &out);
    let tree = fixture_tree(&d.path().join("b"));
    std::fs::write(tree.join("new.txt"), b"content no fixture has\n").unwrap();
    let fl = d.path().join("more.fl");
    run_ok(&pack_args(&fl, &sharded, &[], &tree));
    assert_eq!(objects_by_layout(&sharded), (0, 57));
    let out2 = d.path().join("out2");
    run_ok(&["unpack", "-m", s(&fl), "-p", s(&out2)]);
    assert_same_tree(&tree, &out2);

    // The same objects flat, as released rfs writes them: they read, and the store stays
    // flat.
    let flat = d.path().join("flat");
    flat_copy(&rfs("store"), &flat);
    let out3 = d.path().join("out3");
    unpack_sample(&flat, &["-p", s(&out3)]);
    assert_same_tree(&reference, &out3);
    run_ok(&pack_args(&d.path().join("more2.fl"), &flat, &[], &tree));
    assert_eq!(objects_by_layout(&flat), (57, 0));
}
