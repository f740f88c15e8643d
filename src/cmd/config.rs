//! `zvfs config`: list and edit an flist's tags and store routes, like rfs 2.x
//! (`config tag list|add|delete`, `config store list|add|delete`). Every edit is atomic:
//! the flist is copied next to itself, edited, synced and renamed over the original, so a
//! mount or reader never sees a half-edited file. The copy of an edit killed before it
//! finished (and its SQLite journal) is removed by the next edit in that directory once
//! its process is gone. Passwords are stripped from added routes unless asked otherwise;
//! added routes are checked like every `-s` (a route is deleted by URL unchecked, so a bad
//! one can be removed). The reserved `version` tag (the schema marker) is never set or
//! deleted here.

use std::path::{Path, PathBuf};

use crate::error::{Context, Error, ExitCode, Result};
use crate::flist::v2::V2Editor;
use crate::flist::{self, Route};
use crate::store;
use crate::sys::atomic::AtomicFile;

/// Arguments of `zvfs config`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flist to read or edit (an rfs v2 / zvfs `.fl`).
    #[arg(short = 'm', long = "meta")]
    pub meta: PathBuf,
    /// What to list or edit.
    #[command(subcommand)]
    pub what: What,
}

/// The two things `zvfs config` edits.
#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// Free key/value metadata.
    Tag {
        /// What to do with the tags.
        #[command(subcommand)]
        op: TagOp,
    },
    /// Store routes (where the chunks are).
    Store {
        /// What to do with the routes.
        #[command(subcommand)]
        op: StoreOp,
    },
}

/// `zvfs config tag` operations.
#[derive(clap::Subcommand, Debug)]
pub enum TagOp {
    /// Print every tag as `key=value`.
    List,
    /// Set tags (an existing key is replaced; `version` is reserved).
    Add {
        /// `key=value` (repeatable).
        #[arg(short = 't', long = "tag", required = true, value_parser = super::TagSpec::Pair)]
        tags: Vec<String>,
    },
    /// Delete tags by key, or all of them (but the reserved `version` marker).
    Delete {
        /// Key to delete (repeatable).
        #[arg(
            short = 'k',
            long = "key",
            required_unless_present = "all",
            value_parser = super::TagSpec::Key
        )]
        keys: Vec<String>,
        /// Delete every tag but `version`.
        #[arg(short = 'a', long = "all", conflicts_with = "keys")]
        all: bool,
    },
}

/// `zvfs config store` operations.
#[derive(clap::Subcommand, Debug)]
pub enum StoreOp {
    /// Print every route as `xx-xx=URL` (the form `-s` accepts).
    List,
    /// Add routes, `[xx-xx=]URL` (repeatable).
    Add {
        /// Route to add, `[xx-xx=]URL` (repeatable).
        #[arg(short = 's', long = "store", required = true, value_parser = super::StoreSpec)]
        stores: Vec<String>,
        /// Keep passwords in the URLs written into the flist.
        #[arg(long)]
        no_strip_password: bool,
    },
    /// Delete routes by URL, or all of them.
    Delete {
        /// URL of the routes to delete (repeatable; a `xx-xx=` prefix is ignored).
        #[arg(short = 's', long = "store", required_unless_present = "all")]
        stores: Vec<String>,
        /// Delete every route.
        #[arg(short = 'a', long = "all", conflicts_with = "stores")]
        all: bool,
    },
}

/// The route as `-s` takes it and `store list` prints it.
pub fn route_spec(r: &Route) -> String {
    format!("{:02x}-{:02x}={}", r.start, r.end, store::redact(&r.url))
}

/// Edit an flist atomically: copy it next to itself, run `edit` on the copy, sync it and
/// rename it over the original. On any error the original is left untouched. Legacy
/// flists are refused: they are read-only here (`zvfs convert` makes a v2 `.fl`).
pub fn edit_flist(path: &Path, edit: impl FnOnce(&V2Editor) -> Result<()>) -> Result<()> {
    refuse_legacy(path)?;
    // The copy is locked while it is edited (see `sys::leftovers`); a copy (and its SQLite
    // journal) left by an edit killed before it finished goes with the next edit.
    let copy = AtomicFile::new(path)?;
    let tmp = copy.path().to_path_buf();
    std::fs::copy(path, &tmp)
        .with_ctx(|| format!("copying {} to {}", path.display(), tmp.display()))?;
    {
        let ed = V2Editor::open(&tmp).with_ctx(|| format!("editing {}", path.display()))?;
        edit(&ed)?;
    }
    copy.commit()
}

/// A clear error for a legacy flist, instead of what SQLite says about a gzip file.
fn refuse_legacy(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut magic = [0u8; 2];
    let mut f =
        std::fs::File::open(path).with_ctx(|| format!("opening flist {}", path.display()))?;
    let n = f
        .read(&mut magic)
        .with_ctx(|| format!("reading {}", path.display()))?;
    if flist::legacy::is_gzip(&magic[..n]) {
        return Err(Error::invalid(format!(
            "{}: legacy flists are read-only; use zvfs convert to make a v2 .fl first",
            path.display()
        )));
    }
    Ok(())
}

/// Parse `-s` arguments into routes as they should be written into an flist; each is
/// checked (`check_store_spec`) first.
pub fn routes_to_write(specs: &[String], keep_password: bool) -> Result<Vec<Route>> {
    specs
        .iter()
        .map(|s| {
            let mut r = super::check_store_spec(s)?;
            if !keep_password {
                r.url = store::strip_password(&r.url);
            }
            Ok(r)
        })
        .collect()
}

/// List, or edit atomically, the flist's tags or routes.
pub fn run(args: Args) -> Result<ExitCode> {
    let meta = &args.meta;
    match args.what {
        What::Tag { op: TagOp::List } => {
            let fl = flist::open(meta)?;
            for (k, v) in fl.tags()? {
                println!("{k}={v}");
            }
        }
        What::Tag {
            op: TagOp::Add { tags },
        } => {
            let parsed = tags
                .iter()
                .map(|t| super::check_tag_spec(t))
                .collect::<Result<Vec<_>>>()?;
            edit_flist(meta, |ed| {
                parsed.iter().try_for_each(|(k, v)| ed.set_tag(k, v))
            })?;
        }
        What::Tag {
            op: TagOp::Delete { keys, all },
        } => {
            keys.iter().try_for_each(|k| flist::v2::check_tag_key(k))?;
            edit_flist(meta, |ed| {
                if all {
                    ed.delete_all_tags()
                } else {
                    keys.iter().try_for_each(|k| ed.delete_tag(k))
                }
            })?
        }
        What::Store { op: StoreOp::List } => {
            let fl = flist::open(meta)?;
            for r in fl.routes()? {
                println!("{}", route_spec(&r));
            }
        }
        What::Store {
            op:
                StoreOp::Add {
                    stores,
                    no_strip_password,
                },
        } => {
            let routes = routes_to_write(&stores, no_strip_password)?;
            edit_flist(meta, |ed| routes.iter().try_for_each(|r| ed.add_route(r)))?;
        }
        What::Store {
            op: StoreOp::Delete { stores, all },
        } => edit_flist(meta, |ed| {
            if all {
                return ed.delete_all_routes();
            }
            for s in &stores {
                let url = Route::parse(s)?.url;
                let mut n = ed.delete_route(&url)?;
                let stripped = store::strip_password(&url);
                if stripped != url {
                    n += ed.delete_route(&stripped)?;
                }
                if n == 0 {
                    return Err(Error::not_found(format!(
                        "{}: no route with URL {}; nothing changed",
                        meta.display(),
                        store::redact(&url)
                    )));
                }
            }
            Ok(())
        })?,
    }
    Ok(ExitCode::Ok)
}
