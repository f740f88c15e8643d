//! `zvfs config`: list and edit an flist's tags and store routes, like rfs 2.x
//! (`config tag list|add|delete`, `config store list|add|delete`). Every edit is atomic:
//! the flist is copied next to itself, edited, synced and renamed over the original, so a
//! mount or reader never sees a half-edited file. The copy of an edit killed before it
//! finished (and its SQLite journal) is removed by the next edit in that directory once
//! its process is gone. Passwords are stripped from added routes unless asked otherwise;
//! added routes are checked like every `-s` (a route is deleted by URL unchecked, so a bad
//! one can be removed). The reserved `version` tag (the schema marker) is never set or
//! deleted here.

use std::path::PathBuf;

use crate::error::{Error, ExitCode, Result};
use crate::flist::{self, Route};
use crate::store;

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
    let mut out = super::out::Out::new();
    let meta = &args.meta;
    match args.what {
        What::Tag { op: TagOp::List } => {
            let fl = flist::open(meta)?;
            for (k, v) in fl.tags()? {
                out.line(format_args!("{k}={v}"))?;
            }
        }
        What::Tag {
            op: TagOp::Add { tags },
        } => {
            let parsed = tags
                .iter()
                .map(|t| super::check_tag_spec(t))
                .collect::<Result<Vec<_>>>()?;
            flist::v2::edit_atomically(meta, |ed| {
                parsed.iter().try_for_each(|(k, v)| ed.set_tag(k, v))
            })?;
        }
        What::Tag {
            op: TagOp::Delete { keys, all },
        } => {
            keys.iter().try_for_each(|k| flist::v2::check_tag_key(k))?;
            flist::v2::edit_atomically(meta, |ed| {
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
                out.line(format_args!("{}", route_spec(&r)))?;
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
            flist::v2::edit_atomically(meta, |ed| routes.iter().try_for_each(|r| ed.add_route(r)))?;
        }
        What::Store {
            op: StoreOp::Delete { stores, all },
        } => flist::v2::edit_atomically(meta, |ed| {
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
    out.finish()?;
    Ok(ExitCode::Ok)
}
