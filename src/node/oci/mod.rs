//! `zvfs oci`: OCI containers whose root filesystem is an flist.
//!
//! `prepare BUNDLE` reads the bundle's `config.json`, mounts the flist named by its
//! annotations read-only (one mount per flist md5, shared by every container made from
//! it) and an overlay with a per-container writable layer on `root.path`; it also adds
//! itself as a poststop hook. `hook` is that poststop hook: given the container state on
//! stdin it takes the overlay and the writable layer away, and the shared mount with its
//! last user. Everything done is recorded under the state directory (see `state`), so the
//! hook undoes exactly what prepare did, and nothing else.
//!
//! Annotations (in `config.json`):
//! - `org.zero-os.flist`: flist path (relative to the bundle) or http(s) URL;
//! - `org.zero-os.image` (instead of `org.zero-os.flist`): a container image reference
//!   (what `zvfs import` takes). Imported once per reference into the cache directory
//!   (`CACHE/images/<sha256 of the reference>.fl`, chunks in the dir store
//!   `CACHE/images/store`, layers remembered by the layer index), then used as the flist;
//!   registry credentials come from `$HOME/.docker/config.json`;
//! - `org.zero-os.flist.store`: store URLs overriding the flist's routes (comma or space
//!   separated, each `[xx-xx=]URL`);
//! - `org.zero-os.flist.cache`: chunk cache directory (default `--cache`,
//!   `/var/cache/zvfs`); `org.zero-os.flist.cache-size`: its bound (default 4G);
//! - `org.zero-os.container-id`: the name of the container's state (default: the bundle
//!   directory's name). The hook finds the container by this annotation, else by the
//!   bundle's name (runc passes both `annotations` and `bundle` in the state).
//!
//! This module orchestrates; the mounting itself is [`crate::daemon`] (the mount daemon
//! behind `zvfs mount`: FUSE) and overlayfs.

pub mod lower;
pub mod spec;
pub mod state;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use self::lower::MountConfig;
use self::spec::Spec;
use self::state::{ContainerRecord, State, DEFAULT_STATE_DIR};
use crate::error::{Context, Error, ExitCode, Result};
use crate::sys::mountinfo;
use crate::sys::mounts::Layer;

/// Annotation naming the bundle's flist (required): a path relative to the bundle, or an
/// http(s) URL.
pub const ANN_FLIST: &str = "org.zero-os.flist";
/// Annotation naming a container image to import and use as the root filesystem, when
/// [`ANN_FLIST`] is absent.
pub const ANN_IMAGE: &str = "org.zero-os.image";
/// Annotation with store URLs overriding the flist's routes (comma or space separated,
/// each `[xx-xx=]URL`).
pub const ANN_STORE: &str = "org.zero-os.flist.store";
/// Annotation naming the chunk cache directory (default: `prepare --cache`).
pub const ANN_CACHE: &str = "org.zero-os.flist.cache";
/// Annotation with the bound of the chunk cache (K, M, G suffixes; default 4G).
pub const ANN_CACHE_SIZE: &str = "org.zero-os.flist.cache-size";
/// Annotation naming the container's state (default: the bundle directory's name).
pub const ANN_ID: &str = "org.zero-os.container-id";

/// Chunk cache directory of bundles without the [`ANN_CACHE`] annotation, unless
/// `prepare --cache` names another.
pub const DEFAULT_CACHE: &str = "/var/cache/zvfs";
const DEFAULT_CACHE_SIZE: &str = "4G";
/// Time allowed to download an flist given by URL.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest container state accepted on the hook's stdin.
const MAX_STATE: u64 = 1 << 20;

/// Arguments of `zvfs oci`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do: prepare a bundle, or run as its poststop hook.
    #[command(subcommand)]
    pub command: OciCommand,
}

/// The subcommands of `zvfs oci`.
#[derive(clap::Subcommand, Debug)]
pub enum OciCommand {
    /// Mount a bundle's flist (annotation org.zero-os.flist) with a writable overlay on
    /// its root.path, and add the poststop hook that undoes it.
    Prepare(PrepareArgs),
    /// OCI poststop hook: reads the container state on stdin and removes that
    /// container's overlay, its writable layer and, with its last user, the flist mount.
    Hook(HookArgs),
}

/// Arguments of `zvfs oci prepare`.
#[derive(clap::Args, Debug)]
pub struct PrepareArgs {
    /// State directory (records, writable layers, shared mounts).
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Chunk cache directory for bundles without the org.zero-os.flist.cache annotation.
    #[arg(long, default_value = DEFAULT_CACHE)]
    pub cache: PathBuf,
    /// Leave config.json alone (the poststop hook must then be wired by hand).
    #[arg(long)]
    pub no_hook: bool,
    /// The OCI bundle directory (holding config.json).
    pub bundle: PathBuf,
}

/// Arguments of `zvfs oci hook`.
#[derive(clap::Args, Debug)]
pub struct HookArgs {
    /// State directory used by prepare.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// Run `zvfs oci prepare` or `zvfs oci hook` (the hook reads the container state from
/// stdin).
pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        OciCommand::Prepare(a) => prepare(a),
        OciCommand::Hook(a) => hook(a, &mut std::io::stdin().lock()),
    }
}

/// runc accepts `[\w+.-]+` as container ids; the same keeps state names path-safe.
fn check_name(name: &str, from: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "container name {name:?} (from {from}) may only hold letters, digits, '_', '+', '-' and '.'"
        )))
    }
}

fn bundle_name(bundle: &Path) -> String {
    bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The container's state name: annotation `org.zero-os.container-id`, else the bundle
/// directory's name.
fn container_name(ann: &BTreeMap<String, String>, bundle: &Path) -> Result<String> {
    match ann.get(ANN_ID) {
        Some(id) => {
            check_name(id, &format!("annotation {ANN_ID}"))?;
            Ok(id.clone())
        }
        None => {
            let name = bundle_name(bundle);
            check_name(&name, &format!("the name of bundle {}", bundle.display()))?;
            Ok(name)
        }
    }
}

/// The local flist file and its md5: a URL is downloaded into the state directory
/// (reused while its md5 is unchanged); a relative path is relative to the bundle.
fn local_flist(reference: &str, bundle: &Path, state: &State) -> Result<(PathBuf, String)> {
    if crate::flist::download::is_url(reference) {
        let path = crate::flist::download::fetch(reference, &state.meta_dir(), DOWNLOAD_TIMEOUT)
            .map_err(|e| {
                e.context(format!(
                    "flist {reference} (annotation {ANN_FLIST}) is unreachable"
                ))
            })?;
        let md5 = crate::flist::download::md5_of_file(&path)?;
        return Ok((path, md5));
    }
    let path = bundle.join(reference);
    let path = path.canonicalize().map_err(|e| {
        Error::from(e).context(format!(
            "flist {} (annotation {ANN_FLIST}) is unreachable",
            path.display()
        ))
    })?;
    if !path.is_file() {
        return Err(Error::invalid(format!(
            "flist {} (annotation {ANN_FLIST}) is not a file",
            path.display()
        )));
    }
    let md5 = crate::flist::download::md5_of_file(&path)?;
    Ok((path, md5))
}

/// The flist of the container image `image`: `CACHE/images/<sha256 of the reference>.fl`,
/// imported (chunks into the dir store `CACHE/images/store`) unless it already exists.
fn imported_flist(image: &str, cache: &Path) -> Result<PathBuf> {
    use sha2::Digest;
    let dir = cache.join("images");
    let name = hex::encode(sha2::Sha256::digest(image.as_bytes()));
    let flist = dir.join(format!("{name}.fl"));
    if flist.is_file() {
        log::info!("image {image}: using {} imported before", flist.display());
        return Ok(flist);
    }
    let store = dir.join("store");
    std::fs::create_dir_all(&store).with_ctx(|| format!("creating {}", store.display()))?;
    let routes = vec![crate::flist::Route::parse(&format!(
        "dir://{}",
        store.display()
    ))?];
    let router = crate::store::router::Router::new(&routes, &Default::default())?;
    let opts = crate::import::Options {
        image: image.to_string(),
        fetch: crate::image::FetchOptions::default(),
        output: flist.clone(),
        routes,
        tags: Vec::new(),
        jobs: crate::pack::default_jobs(),
        keep_passwords: false,
        startup_file: true,
        prefetch: None,
        index_dir: Some(cache.to_path_buf()),
    };
    let s = crate::import::import(&opts, &router)
        .map_err(|e| e.context(format!("importing image {image} (annotation {ANN_IMAGE})")))?;
    log::info!(
        "image {image}: imported into {} ({} layers, {} reused, {} entries, {} bytes, {} chunks uploaded, {:.2} s)",
        flist.display(),
        s.layers,
        s.reused_layers,
        s.entries,
        s.bytes,
        s.uploaded,
        s.seconds
    );
    Ok(flist)
}

/// Create `rootfs` if missing; it must be an empty directory. Returns its canonical path.
fn empty_rootfs(rootfs: &Path) -> Result<PathBuf> {
    if !rootfs.exists() {
        std::fs::create_dir_all(rootfs).with_ctx(|| format!("creating {}", rootfs.display()))?;
    }
    let canon = rootfs
        .canonicalize()
        .with_ctx(|| format!("root.path {}", rootfs.display()))?;
    if !canon.is_dir() {
        return Err(Error::invalid(format!(
            "root.path {} is not a directory",
            rootfs.display()
        )));
    }
    let mut entries =
        std::fs::read_dir(&canon).with_ctx(|| format!("listing root.path {}", canon.display()))?;
    if entries.next().is_some() {
        return Err(Error::invalid(format!(
            "root.path {} is not empty: the flist is mounted there; empty it or point root.path elsewhere",
            canon.display()
        )));
    }
    Ok(canon)
}

/// The topmost mount at `target` (an absolute, canonical path), if any.
pub(crate) fn mounted_at(target: &Path) -> Result<Option<mountinfo::MountEntry>> {
    let all = mountinfo::read()?;
    Ok(mountinfo::at(&all, target).cloned())
}

fn overlay_mounted(rootfs: &Path) -> Result<bool> {
    Ok(mounted_at(rootfs)?.is_some_and(|m| m.is_overlay()))
}

/// The writable layer and the overlay of a container whose lower layer is acquired.
fn setup_container(state: &State, rec: &ContainerRecord) -> Result<()> {
    let dir = state.container_dir(&rec.name);
    let layer = Layer {
        ro: rec.lower.clone(),
        rw: dir.join("upper"),
        wd: dir.join("work"),
    };
    for d in [&layer.rw, &layer.wd] {
        std::fs::create_dir_all(d).with_ctx(|| format!("creating {}", d.display()))?;
    }
    state.write_container(rec)?;
    // nodev like every flist mount (the container's /dev is its own mount).
    let flags = crate::fs::mount::MountOpts::default().flags();
    crate::sys::mounts::mount_overlay(&rec.lower, &layer, &rec.rootfs, flags)
}

/// Undo `prepare` for one container: overlay, writable layer, then its use of the flist.
fn teardown(state: &State, rec: &ContainerRecord) -> Result<()> {
    if overlay_mounted(&rec.rootfs)? {
        crate::fs::mount::unmount_path(&rec.rootfs)?;
    }
    let dir = state.container_dir(&rec.name);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::from(e).context(format!("removing {}", dir.display()))),
    }
    lower::release(state, &rec.md5, &rec.name)
}

fn hook_args(state_dir: &Path) -> Vec<String> {
    let mut args = vec!["zvfs".to_string(), "oci".into(), "hook".into()];
    if state_dir != Path::new(DEFAULT_STATE_DIR) {
        args.push("--state-dir".into());
        args.push(state_dir.to_string_lossy().into_owned());
    }
    args
}

fn prepare(args: PrepareArgs) -> Result<ExitCode> {
    let bundle = args
        .bundle
        .canonicalize()
        .with_ctx(|| format!("bundle {}", args.bundle.display()))?;
    let mut spec = Spec::load(&bundle)?;
    let ann = spec.annotations()?;
    let annotation = |k: &str| {
        ann.get(k)
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let image = annotation(ANN_IMAGE);
    let reference = match (annotation(ANN_FLIST), &image) {
        (Some(f), _) => f,
        (None, Some(_)) => String::new(),
        (None, None) => {
            return Err(Error::invalid(format!(
                "{}: annotation {ANN_FLIST} is missing (the flist of the root filesystem: a path or an http(s) URL; or {ANN_IMAGE}: a container image)",
                spec.path().display()
            )))
        }
    };
    let name = container_name(&ann, &bundle)?;
    let root = spec.root_path()?;
    let rootfs = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    let state = State::open(&args.state_dir)?;
    let _lock = state.lock()?;

    if let Some(rec) = state.container(&name)? {
        if rec.bundle != bundle {
            return Err(Error::invalid(format!(
                "container name {name} is already used by bundle {}; set annotation {ANN_ID} to tell them apart",
                rec.bundle.display()
            )));
        }
        if overlay_mounted(&rec.rootfs)? {
            add_hook(&mut spec, &args, state.root())?;
            // A closed stdout does not undo or fail a prepare.
            let _ = writeln!(
                std::io::stdout(),
                "container {name} already prepared: {} on {}",
                rec.lower.display(),
                rec.rootfs.display()
            );
            return Ok(ExitCode::Ok);
        }
        log::warn!("container {name}: stale state (overlay gone); preparing it again");
        teardown(&state, &rec)?;
    }

    let rootfs = empty_rootfs(&rootfs)?;
    let cache_dir = ann
        .get(ANN_CACHE)
        .map(PathBuf::from)
        .unwrap_or_else(|| args.cache.clone());
    let reference = match (&image, reference.is_empty()) {
        (Some(img), true) => imported_flist(img, &cache_dir)?
            .to_string_lossy()
            .into_owned(),
        _ => reference,
    };
    let (flist, md5) = local_flist(&reference, &bundle, &state)?;
    crate::flist::open(&flist).with_ctx(|| format!("flist {}", flist.display()))?;
    add_hook(&mut spec, &args, state.root())?;

    let cfg = MountConfig {
        cache: cache_dir,
        cache_size: ann
            .get(ANN_CACHE_SIZE)
            .cloned()
            .unwrap_or_else(|| DEFAULT_CACHE_SIZE.to_string()),
        stores: ann
            .get(ANN_STORE)
            .map(|s| {
                s.split([',', ' ', '\t', '\n'])
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let lower = lower::acquire(&state, &md5, &flist, &cfg, &name)?;
    let rec = ContainerRecord {
        name: name.clone(),
        bundle,
        rootfs,
        md5,
        lower,
    };
    if let Err(e) = setup_container(&state, &rec) {
        if let Err(e2) = teardown(&state, &rec) {
            log::error!("cleaning up after a failed prepare: {e2}");
        }
        return Err(e);
    }
    // A closed stdout does not undo or fail a prepare.
    let _ = writeln!(
        std::io::stdout(),
        "container {name}: flist {} (md5 {}) on {}, writable layer {}",
        flist.display(),
        rec.md5,
        rec.rootfs.display(),
        state.container_dir(&name).join("upper").display()
    );
    Ok(ExitCode::Ok)
}

/// The hook names the state directory by its absolute path (runtimes run hooks from
/// their own working directory).
fn add_hook(spec: &mut Spec, args: &PrepareArgs, state_dir: &Path) -> Result<()> {
    if args.no_hook {
        return Ok(());
    }
    let exe = std::env::current_exe().ctx("finding the zvfs executable")?;
    if spec.add_hook(&exe, &hook_args(state_dir))? {
        spec.save()?;
        log::info!("added the poststop hook to {}", spec.path().display());
    }
    Ok(())
}

/// The container state runc (or another runtime) passes to hooks on stdin.
#[derive(Debug, Deserialize)]
struct HookState {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    bundle: Option<PathBuf>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn hook(args: HookArgs, input: &mut dyn Read) -> Result<ExitCode> {
    let mut raw = Vec::new();
    input
        .take(MAX_STATE)
        .read_to_end(&mut raw)
        .ctx("reading the container state from stdin")?;
    let st: HookState = serde_json::from_slice(&raw).map_err(|e| {
        Error::format(format!(
            "the container state on stdin is not valid OCI state JSON: {e}"
        ))
    })?;
    if let Some(s) = st.status.as_deref() {
        if s != "stopped" {
            return Err(Error::invalid(format!(
                "container {}: status {s:?}; zvfs oci hook is a poststop hook (expects \"stopped\")",
                st.id
            )));
        }
    }
    let (name, from) = match (&st.annotations.get(ANN_ID), &st.bundle) {
        (Some(id), _) => (id.to_string(), format!("annotation {ANN_ID}")),
        (None, Some(b)) => (bundle_name(b), format!("bundle {}", b.display())),
        (None, None) => (st.id.clone(), "the container id".to_string()),
    };
    check_name(&name, &from)?;
    let state = State::open(&args.state_dir)?;
    let _lock = state.lock()?;
    let rec = state.container(&name)?.ok_or_else(|| {
        Error::not_found(format!(
            "unknown container {} ({from}): no state {} (was it prepared with zvfs oci prepare?)",
            st.id,
            state.container_dir(&name).display()
        ))
    })?;
    if let Some(b) = &st.bundle {
        let b = b.canonicalize().unwrap_or_else(|_| b.clone());
        if b != rec.bundle {
            return Err(Error::not_found(format!(
                "unknown container {}: its bundle {} is not the prepared bundle {} of {name}",
                st.id,
                b.display(),
                rec.bundle.display()
            )));
        }
    }
    teardown(&state, &rec)?;
    log::info!(
        "container {} ({name}) cleaned up: overlay {} and its writable layer removed",
        st.id,
        rec.rootfs.display()
    );
    Ok(ExitCode::Ok)
}
