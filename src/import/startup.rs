//! What an image's config says about starting it, in the two forms an flist carries:
//! `/.startup.toml` exactly as `rfs docker` writes it (formats.md section 8: rfs builds a
//! JSON value and prints it with toml 0.4, so keys come sorted, a table's header appears
//! only when it has keys of its own, strings are basic strings) and the `image.*` tags.
//! It reads nothing and writes nothing.

use std::collections::BTreeMap;

/// The start command as rfs derives it: entrypoint\[0\] (else cmd\[0\], else `/bin/sh`),
/// then the rest of entrypoint followed by cmd; env as a table; working dir (default `/`).
pub struct Startup {
    /// The program.
    pub name: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs, later ones winning; entries without `=` are dropped.
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub dir: String,
}

impl Startup {
    /// Derive it from an image config's entrypoint, cmd, env and working directory.
    pub fn new(entrypoint: &[String], cmd: &[String], env: &[String], workdir: &str) -> Startup {
        let mut name = String::new();
        let mut args = Vec::new();
        if let Some((first, rest)) = entrypoint.split_first() {
            name = first.clone();
            args.extend(rest.iter().cloned());
        }
        if let Some((first, rest)) = cmd.split_first() {
            if name.is_empty() {
                name = first.clone();
                args.extend(rest.iter().cloned());
            } else {
                args.extend(cmd.iter().cloned());
            }
        }
        if name.is_empty() {
            name = "/bin/sh".to_string();
        }
        let env = env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let dir = if workdir.is_empty() { "/" } else { workdir }.to_string();
        Startup {
            name,
            args,
            env,
            dir,
        }
    }

    /// The `/.startup.toml` document.
    pub fn toml(&self) -> String {
        let mut s = String::from("[startup.entry]\nname = \"core.system\"\n");
        s.push_str("\n[startup.entry.args]\n");
        let args: Vec<String> = self.args.iter().map(|a| basic(a)).collect();
        s.push_str(&format!("args = [{}]\n", args.join(", ")));
        s.push_str(&format!("dir = {}\n", basic(&self.dir)));
        s.push_str(&format!("name = {}\n", basic(&self.name)));
        if !self.env.is_empty() {
            s.push_str("\n[startup.entry.args.env]\n");
            for (k, v) in &self.env {
                s.push_str(&format!("{} = {}\n", key(k), basic(v)));
            }
        }
        s
    }
}

/// A TOML key: bare when it may be, else a basic string.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        k.to_string()
    } else {
        basic(k)
    }
}

/// A TOML basic string with the escapes TOML requires.
fn basic(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list as a JSON array, for a tag value.
pub fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn startup_follows_rfs_rules_and_toml_layout() {
        let s = Startup::new(
            &v(&["/entry", "-x"]),
            &v(&["run", "it"]),
            &v(&["PATH=/bin", "B=x=y", "NOEQ", "A=\"q\""]),
            "/work",
        );
        assert_eq!(s.name, "/entry");
        assert_eq!(s.args, v(&["-x", "run", "it"]));
        assert_eq!(
            s.toml(),
            "[startup.entry]\nname = \"core.system\"\n\n[startup.entry.args]\n\
             args = [\"-x\", \"run\", \"it\"]\ndir = \"/work\"\nname = \"/entry\"\n\n\
             [startup.entry.args.env]\nA = \"\\\"q\\\"\"\nB = \"x=y\"\nPATH = \"/bin\"\n"
        );
        let s = Startup::new(&[], &v(&["/bin/app", "a"]), &[], "");
        assert_eq!(
            (s.name.as_str(), s.args.clone(), s.dir.as_str()),
            ("/bin/app", v(&["a"]), "/")
        );
        let s = Startup::new(&[], &[], &[], "");
        assert_eq!(s.name, "/bin/sh");
        assert!(s.toml().contains("args = []\n") && !s.toml().contains(".env]"));
    }
}
