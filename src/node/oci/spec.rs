//! The bundle's `config.json` (OCI runtime spec), kept as a JSON value so that every
//! field we do not know survives a rewrite. Reads the annotations and `root.path`, and
//! adds our poststop hook. Knows nothing of mounts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Context, Error, Result};

/// A bundle's `config.json`, loaded whole.
pub struct Spec {
    path: PathBuf,
    value: Value,
}

impl Spec {
    /// Read `BUNDLE/config.json`; a format error unless it is a JSON object.
    pub fn load(bundle: &Path) -> Result<Spec> {
        let path = bundle.join("config.json");
        let bytes = std::fs::read(&path).with_ctx(|| format!("reading {}", path.display()))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::format(format!("{}: not valid JSON: {e}", path.display())))?;
        if !value.is_object() {
            return Err(Error::format(format!(
                "{}: not a JSON object",
                path.display()
            )));
        }
        Ok(Spec { path, value })
    }

    /// The `config.json` this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The string annotations (others are refused: the spec says map of strings).
    pub fn annotations(&self) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let Some(map) = self.value.get("annotations") else {
            return Ok(out);
        };
        let map = map.as_object().ok_or_else(|| {
            Error::format(format!(
                "{}: \"annotations\" is not an object",
                self.path.display()
            ))
        })?;
        for (k, v) in map {
            let v = v.as_str().ok_or_else(|| {
                Error::format(format!(
                    "{}: annotation {k:?} is not a string",
                    self.path.display()
                ))
            })?;
            out.insert(k.clone(), v.to_string());
        }
        Ok(out)
    }

    /// `root.path`, as written.
    pub fn root_path(&self) -> Result<PathBuf> {
        self.value
            .get("root")
            .and_then(|r| r.get("path"))
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| Error::format(format!("{}: no root.path", self.path.display())))
    }

    /// Whether a poststop hook running `<any> oci hook` is already there.
    pub fn has_hook(&self) -> bool {
        let Some(list) = self
            .value
            .pointer("/hooks/poststop")
            .and_then(Value::as_array)
        else {
            return false;
        };
        list.iter().any(|h| {
            let args: Vec<&str> = h
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            args.windows(2).any(|w| w == ["oci", "hook"])
        })
    }

    /// Append the poststop hook `exe` with `args` unless one is there; true if added.
    pub fn add_hook(&mut self, exe: &Path, args: &[String]) -> Result<bool> {
        if self.has_hook() {
            return Ok(false);
        }
        let exe = exe
            .to_str()
            .ok_or_else(|| Error::invalid(format!("{}: not UTF-8", exe.display())))?;
        let hook = json!({ "path": exe, "args": args });
        let bad = || {
            Error::format(format!(
                "{}: \"hooks\" or \"hooks.poststop\" has the wrong type",
                self.path.display()
            ))
        };
        let obj = self.value.as_object_mut().ok_or_else(bad)?;
        let hooks = obj.entry("hooks").or_insert_with(|| json!({}));
        let hooks = hooks.as_object_mut().ok_or_else(bad)?;
        let post = hooks.entry("poststop").or_insert_with(|| json!([]));
        post.as_array_mut().ok_or_else(bad)?.push(hook);
        Ok(true)
    }

    /// Write the spec back atomically, keeping the file's mode.
    pub fn save(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&self.path)
            .map(|m| m.permissions().mode() & 0o7777)
            .ok();
        let mut bytes = serde_json::to_vec_pretty(&self.value)
            .map_err(|e| Error::invalid(format!("encoding {}: {e}", self.path.display())))?;
        bytes.push(b'\n');
        crate::sys::atomic::write_file(&self.path, &bytes, mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_root_and_hook_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"x-unknown":{"keep":1},
               "annotations":{"org.zero-os.flist":"/f.fl"}}"#,
        )
        .unwrap();
        let mut s = Spec::load(dir.path()).unwrap();
        assert_eq!(s.root_path().unwrap(), PathBuf::from("rootfs"));
        assert_eq!(s.annotations().unwrap()["org.zero-os.flist"], "/f.fl");
        assert!(!s.has_hook());
        let args = vec!["zvfs".to_string(), "oci".into(), "hook".into()];
        assert!(s.add_hook(Path::new("/bin/zvfs"), &args).unwrap());
        assert!(!s.add_hook(Path::new("/bin/zvfs"), &args).unwrap());
        s.save().unwrap();
        let back = Spec::load(dir.path()).unwrap();
        assert!(back.has_hook());
        assert_eq!(back.value["x-unknown"]["keep"], 1);
        assert_eq!(back.value["hooks"]["poststop"][0]["path"], "/bin/zvfs");
    }

    #[test]
    fn bad_specs_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.json");
        std::fs::write(&cfg, "{not json").unwrap();
        let e = Spec::load(dir.path()).err().unwrap().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        std::fs::write(&cfg, r#"{"annotations":{"a":1}}"#).unwrap();
        let s = Spec::load(dir.path()).unwrap();
        assert_eq!(
            s.annotations().err().map(|e| e.kind),
            Some(crate::error::ErrorKind::Format)
        );
        assert!(s.root_path().unwrap_err().to_string().contains("root.path"));
    }
}
