//! The deployment files, checked against each other and against ferry
//! itself, since no container can be built or run here:
//!
//! - `infra/Dockerfile` (+ `infra/Dockerfile.dockerignore`),
//!   `infra/compose.yaml`, `infra/k8s/*.yaml`, `queues/topology*.json`;
//! - every `FERRY_*` variable they name is one ferry reads, and every value
//!   parses the way ferry would parse it;
//! - ports, probe paths, image name, file paths, grace periods and service
//!   names agree between the files;
//! - the probe paths are served by a real `ferry worker` process, and the
//!   quorum topology is declared by a real worker on the local RabbitMQ,
//!   where its delivery limit dead-letters a poison message.

mod support;

use clap::{CommandFactory, FromArgMatches};
use ferry::config::Settings;
use ferry::queue::{QueueNames, Topology};
use futures::StreamExt;
use lapin::options::BasicNackOptions;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{eventually, Signal, TestEnv};

/// The one image name: built by compose and the README command, run by
/// compose and Kubernetes.
const IMAGE: &str = "ferry:latest";
/// The quorum topology, relative to the repository root.
const QUORUM: &str = "queues/topology.quorum.json";
/// The classic topology, relative to the repository root.
const CLASSIC: &str = "queues/topology.json";
/// Settings that must never sit in a ConfigMap or an image.
const SECRETS: [&str; 3] = [
    "FERRY_AMQP_URL",
    "FERRY_INDEX_PASSWORD",
    "FERRY_ADMIN_TOKEN",
];

// ------------------------------------------------------------ files

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Every file under `dir` (relative to the root), recursively, sorted.
fn files_under(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root().join(dir)];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot list {}: {e}", d.display()))
        {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// All documents of a (possibly multi-document) YAML file, merge keys applied.
fn yaml_docs(text: &str, what: &str) -> Vec<Yaml> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            let mut v = <Yaml as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{what}: invalid YAML: {e}"));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{what}: bad merge key: {e}"));
            v
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_file(rel_path: &str) -> Yaml {
    let mut docs = yaml_docs(&read(rel_path), rel_path);
    assert_eq!(docs.len(), 1, "{rel_path}: expected one YAML document");
    docs.remove(0)
}

fn json_file(rel_path: &str) -> Json {
    serde_json::from_str(&read(rel_path))
        .unwrap_or_else(|e| panic!("{rel_path}: invalid JSON: {e}"))
}

fn s<'a>(v: &'a Yaml, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {v:?}"))
}

/// A YAML scalar as text (numbers and booleans included).
fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

// ------------------------------------------------------------ ferry's settings

#[derive(clap::Parser)]
struct Only {
    #[command(flatten)]
    s: Settings,
}

/// `FERRY_*` variable → long flag, from the real `Settings` definition.
fn setting_flags() -> BTreeMap<String, String> {
    <Only as CommandFactory>::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_string();
            Some((
                env,
                a.get_long()
                    .expect("every setting has a long flag")
                    .to_string(),
            ))
        })
        .collect()
}

/// Every variable ferry reads: the settings plus the binary's own two.
fn known_variables() -> BTreeSet<String> {
    let mut all: BTreeSet<String> = setting_flags().into_keys().collect();
    all.insert("FERRY_LOG".into());
    all.insert("FERRY_LOG_JSON".into());
    all
}

/// Parses an environment the way the binary would (as flags, so that this
/// process's own environment plays no part) and returns the settings; panics
/// naming `origin` on an unknown variable or a value ferry would refuse.
fn settings_from(origin: &str, env: &BTreeMap<String, String>) -> Settings {
    let flags = setting_flags();
    let mut argv = vec!["ferry".to_string()];
    for (k, v) in env.iter().filter(|(k, _)| k.starts_with("FERRY_")) {
        match k.as_str() {
            "FERRY_LOG" => {
                tracing_subscriber::EnvFilter::try_new(v).unwrap_or_else(|e| {
                    panic!("{origin}: FERRY_LOG={v:?} is not a valid filter: {e}")
                });
            }
            "FERRY_LOG_JSON" => assert!(
                ["true", "false", "1", "0"].contains(&v.as_str()),
                "{origin}: FERRY_LOG_JSON={v:?} (use true or false)"
            ),
            _ => {
                let long = flags.get(k).unwrap_or_else(|| {
                    panic!("{origin}: {k} is not a setting ferry reads (src/config.rs)")
                });
                argv.push(format!("--{long}={v}"));
            }
        }
    }
    let cmd = <Only as CommandFactory>::command().mut_args(|a| a.env(None::<&'static str>));
    let matches = cmd
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| panic!("{origin}: ferry refuses these settings: {e}"));
    Only::from_arg_matches(&matches)
        .unwrap_or_else(|e| panic!("{origin}: {e}"))
        .s
}

/// The port of an admin bind address that must be reachable from outside a
/// container: `0.0.0.0:<port>` or `[::]:<port>`.
fn container_admin_port(origin: &str, bind: &str) -> u16 {
    let addr: std::net::SocketAddr = bind
        .parse()
        .unwrap_or_else(|e| panic!("{origin}: FERRY_ADMIN_BIND={bind:?}: {e}"));
    assert!(
        addr.ip().is_unspecified(),
        "{origin}: FERRY_ADMIN_BIND={bind} is not reachable from outside the container (use 0.0.0.0:<port>)"
    );
    addr.port()
}

/// Every `FERRY_...` token in a text.
fn ferry_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(off) = text[i..].find("FERRY_") {
        let start = i + off;
        let mut end = start + "FERRY_".len();
        while end < b.len()
            && (b[end].is_ascii_uppercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        let word_start =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        if word_start && end > start + "FERRY_".len() {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

// ------------------------------------------------------------ the Dockerfile

struct Stage {
    from: String,
    name: Option<String>,
    /// (INSTRUCTION, arguments), continuation lines joined, comments dropped.
    steps: Vec<(String, String)>,
}

fn dockerfile() -> Vec<Stage> {
    let text = read("infra/Dockerfile");
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            logical.push(std::mem::take(&mut cur));
        }
    }
    assert!(
        cur.is_empty(),
        "infra/Dockerfile ends inside a continued line"
    );
    let mut stages: Vec<Stage> = Vec::new();
    for l in logical {
        let (ins, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let (ins, args) = (ins.to_uppercase(), args.trim().to_string());
        if ins == "FROM" {
            let parts: Vec<&str> = args.split_whitespace().collect();
            let name = match parts.as_slice() {
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(n.to_string()),
                [_] => None,
                _ => panic!("infra/Dockerfile: unexpected FROM {args}"),
            };
            stages.push(Stage {
                from: parts[0].to_string(),
                name,
                steps: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .steps
                .push((ins, args));
        }
    }
    stages
}

impl Stage {
    fn all<'a>(&'a self, ins: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.steps
            .iter()
            .filter(move |(i, _)| i == ins)
            .map(|(_, a)| a.as_str())
    }

    fn last<'a>(&'a self, ins: &'a str) -> Option<&'a str> {
        self.all(ins).last()
    }

    /// ENV variables, in order (`ENV a=b c=d`; values without spaces).
    fn env(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for args in self.all("ENV") {
            for pair in args.split_whitespace() {
                let (k, v) = pair.split_once('=').unwrap_or_else(|| {
                    panic!("infra/Dockerfile: ENV {args}: use the key=value form")
                });
                out.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        out
    }

    /// COPY steps as (flags, sources, destination).
    fn copies(&self) -> Vec<(Vec<String>, Vec<String>, String)> {
        self.all("COPY")
            .map(|args| {
                let mut words: Vec<String> = args.split_whitespace().map(str::to_string).collect();
                let flags: Vec<String> = words
                    .iter()
                    .take_while(|w| w.starts_with("--"))
                    .cloned()
                    .collect();
                words.drain(..flags.len());
                let dest = words.pop().expect("COPY destination");
                (flags, words, dest)
            })
            .collect()
    }
}

fn exec_form(what: &str, args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("infra/Dockerfile: {what} must use the exec (JSON) form: {e}"))
}

fn runtime_stage(stages: &[Stage]) -> &Stage {
    stages.last().expect("infra/Dockerfile has no stage")
}

/// The repository file or folder an absolute path in the image comes from.
fn image_path_source(image_path: &str) -> Option<PathBuf> {
    let stages = dockerfile();
    for (flags, sources, dest) in runtime_stage(&stages).copies() {
        if flags.iter().any(|f| f.starts_with("--from")) {
            continue;
        }
        for src in sources {
            let src_path = root().join(src.trim_end_matches('/'));
            if src_path.is_dir() {
                let dest_dir = format!("{}/", dest.trim_end_matches('/'));
                if let Some(rest) = image_path.strip_prefix(&dest_dir) {
                    return Some(src_path.join(rest));
                }
            } else if dest.ends_with('/') {
                let name = src_path.file_name()?.to_str()?;
                if image_path == format!("{dest}{name}") {
                    return Some(src_path);
                }
            } else if image_path == dest {
                return Some(src_path);
            }
        }
    }
    None
}

/// Checks that an absolute path in the image is a file the image holds.
fn assert_in_image(origin: &str, var: &str, path: &str) -> PathBuf {
    assert!(
        path.starts_with('/'),
        "{origin}: {var}={path} should be absolute (the working directory is not ferry's)"
    );
    let src = image_path_source(path).unwrap_or_else(|| {
        panic!("{origin}: {var}={path} is not a path infra/Dockerfile copies into the image")
    });
    assert!(
        src.is_file(),
        "{origin}: {var}={path} comes from {}, which does not exist",
        rel(&src)
    );
    src
}

/// Whether infra/Dockerfile.dockerignore lets `path` into the build context
/// (the patterns used there: `*` and literal paths, `!` to let in).
fn context_includes(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    let mut included = true;
    for line in read("infra/Dockerfile.dockerignore").lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (negate, pat) = match l.strip_prefix('!') {
            Some(p) => (true, p.trim_end_matches('/')),
            None => (false, l.trim_end_matches('/')),
        };
        assert!(
            pat == "*" || !pat.contains(['*', '?', '[']),
            "infra/Dockerfile.dockerignore: pattern {l:?} needs a smarter matcher in tests/deployment.rs"
        );
        if pat == "*" || path == pat || path.starts_with(&format!("{pat}/")) {
            included = negate;
        }
    }
    included
}

/// The Dockerfile's facts the other files are compared with.
struct Image {
    admin_port: u16,
    uid: u64,
    healthcheck_path: String,
    env: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

fn image() -> Image {
    let stages = dockerfile();
    assert!(
        stages.len() >= 2,
        "infra/Dockerfile: expected a build stage and a runtime stage"
    );
    let build = &stages[0];
    let runtime = runtime_stage(&stages);

    // The toolchain is Cargo.toml's rust-version.
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| {
            l.trim().strip_prefix("rust-version").map(|r| {
                r.trim()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"')
                    .to_string()
            })
        })
        .expect("Cargo.toml has a rust-version");
    let tag = build.from.strip_prefix("rust:").unwrap_or_else(|| {
        panic!(
            "infra/Dockerfile: build stage FROM {} is not a rust image",
            build.from
        )
    });
    assert!(
        tag == rust_version
            || tag.starts_with(&format!("{rust_version}-"))
            || tag.starts_with(&format!("{rust_version}.")),
        "infra/Dockerfile: rust:{tag} does not match rust-version {rust_version} in Cargo.toml"
    );
    assert!(
        build
            .all("RUN")
            .any(|r| r.contains("cargo build --release --locked")),
        "infra/Dockerfile: the build stage must run `cargo build --release --locked`"
    );
    // The build stage copies everything Cargo.toml points at.
    let build_sources: Vec<String> = build
        .copies()
        .into_iter()
        .flat_map(|(_, src, _)| src)
        .collect();
    for needed in ["Cargo.toml", "Cargo.lock"] {
        assert!(
            build_sources.iter().any(|s| s == needed),
            "infra/Dockerfile: the build stage does not copy {needed}"
        );
    }
    for line in read("Cargo.toml").lines() {
        if let Some(p) = line.trim().strip_prefix("path = ") {
            let p = p.trim_matches('"');
            assert!(
                build_sources
                    .iter()
                    .any(|s| p.starts_with(s.trim_end_matches('/'))),
                "infra/Dockerfile: Cargo.toml names {p}, which the build stage does not copy"
            );
        }
        // Explicit targets must exist even when only the binary is built.
        for (section, dir) in [
            ("[[test]]", "tests"),
            ("[[bench]]", "benches"),
            ("[[example]]", "examples"),
        ] {
            if line.trim() == section {
                assert!(
                    build_sources.iter().any(|s| s.trim_end_matches('/') == dir),
                    "infra/Dockerfile: Cargo.toml declares a {section} target; the build stage must copy {dir}/"
                );
            }
        }
    }

    // Everything copied from the context exists and is let in by the dockerignore.
    for stage in &stages {
        for (flags, sources, _) in stage.copies() {
            if flags.iter().any(|f| f.starts_with("--from")) {
                continue;
            }
            for src in sources {
                assert!(
                    root().join(&src).exists(),
                    "infra/Dockerfile copies {src}, which does not exist"
                );
                assert!(context_includes(&src), "infra/Dockerfile copies {src}, but infra/Dockerfile.dockerignore leaves it out");
            }
        }
    }

    // A small runtime image, not the toolchain.
    assert!(
        !runtime.from.starts_with("rust"),
        "infra/Dockerfile: the runtime stage is the Rust toolchain image"
    );
    let builder = build
        .name
        .as_deref()
        .expect("the build stage is named (FROM ... AS build)");
    let binary = runtime
        .copies()
        .into_iter()
        .find(|(flags, _, _)| flags.iter().any(|f| f == &format!("--from={builder}")))
        .map(|(_, _, dest)| dest)
        .expect("the runtime stage copies the binary from the build stage");
    assert_eq!(
        binary, "/usr/local/bin/ferry",
        "infra/Dockerfile: the binary should be /usr/local/bin/ferry (on PATH)"
    );

    // Non-root, numerically (so Kubernetes can check runAsNonRoot).
    let user = runtime
        .last("USER")
        .expect("infra/Dockerfile: the runtime stage sets USER");
    let uid: u64 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("infra/Dockerfile: USER {user} should be numeric"));
    assert_ne!(uid, 0, "infra/Dockerfile: USER is root");

    // Settings: known, valid, files present, admin reachable.
    let env = runtime.env();
    let settings = settings_from("infra/Dockerfile ENV", &env);
    for secret in SECRETS {
        assert!(
            !env.contains_key(secret),
            "infra/Dockerfile: {secret} is a secret; it must not be baked into the image"
        );
    }
    for var in ["FERRY_TOPOLOGY", "FERRY_MAPPING"] {
        let path = env
            .get(var)
            .unwrap_or_else(|| panic!("infra/Dockerfile: ENV {var} (absolute) is missing"));
        assert_in_image("infra/Dockerfile", var, path);
    }
    let admin_port = container_admin_port("infra/Dockerfile", &settings.admin_bind);
    let exposed: Vec<u16> = runtime
        .all("EXPOSE")
        .flat_map(|a| {
            a.split_whitespace().map(|p| {
                p.trim_end_matches("/tcp")
                    .parse::<u16>()
                    .expect("EXPOSE port")
            })
        })
        .collect();
    assert_eq!(
        exposed,
        vec![admin_port],
        "infra/Dockerfile: EXPOSE should be the admin port of FERRY_ADMIN_BIND"
    );

    // The health check: a tool the image installs, on the admin port.
    let hc = runtime
        .last("HEALTHCHECK")
        .expect("infra/Dockerfile: HEALTHCHECK is missing");
    let (_, cmd) = hc.split_once("CMD ").expect("HEALTHCHECK ... CMD [...]");
    let cmd = exec_form("HEALTHCHECK CMD", cmd.trim());
    assert!(
        runtime
            .all("RUN")
            .any(|r| r.contains("apt-get install") && r.split_whitespace().any(|w| w == cmd[0])),
        "infra/Dockerfile: the health check runs {}, which the runtime stage does not install",
        cmd[0]
    );
    assert!(
        runtime.all("RUN").any(|r| r.contains("ca-certificates")),
        "infra/Dockerfile: ca-certificates (TLS to the services)"
    );
    let urls = urls_in(&cmd.join(" "));
    assert_eq!(
        urls.len(),
        1,
        "infra/Dockerfile: HEALTHCHECK should call one URL: {cmd:?}"
    );
    let healthcheck_path = local_probe("infra/Dockerfile HEALTHCHECK", &urls[0], admin_port);

    let entrypoint = exec_form(
        "ENTRYPOINT",
        runtime.last("ENTRYPOINT").expect("ENTRYPOINT"),
    );
    let cmd = exec_form("CMD", runtime.last("CMD").expect("CMD"));
    assert_eq!(
        entrypoint,
        vec!["ferry"],
        "infra/Dockerfile: ENTRYPOINT [\"ferry\"], so that `docker run IMAGE status` works"
    );
    assert_eq!(
        cmd,
        vec!["worker"],
        "infra/Dockerfile: the default command is the worker"
    );
    Image {
        admin_port,
        uid,
        healthcheck_path,
        env,
        entrypoint,
        cmd,
    }
}

/// Every `http://...` URL in a text.
fn urls_in(text: &str) -> Vec<url::Url> {
    text.split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| url::Url::parse(w).unwrap_or_else(|e| panic!("bad URL {w}: {e}")))
        .collect()
}

/// A probe URL run inside the container: loopback, on the admin port; returns its path.
fn local_probe(origin: &str, u: &url::Url, admin_port: u16) -> String {
    let host = u.host_str().unwrap_or_default();
    assert!(
        ["127.0.0.1", "localhost", "[::1]"].contains(&host),
        "{origin}: {u} should call the container itself"
    );
    assert_eq!(
        u.port_or_known_default(),
        Some(admin_port),
        "{origin}: {u} is not on the admin port {admin_port}"
    );
    u.path().to_string()
}

/// Runs `ferry <args> --help`: the arguments name a real command and
/// options ferry accepts.
fn assert_cli(origin: &str, args: &[String]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .arg("--help")
        .env("FERRY_LOG", "off")
        .output()
        .expect("run ferry");
    assert!(
        out.status.success(),
        "{origin}: `ferry {}` is not a command ferry accepts: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------ compose

/// Compose variable interpolation with the defaults written in the file
/// (the host's environment plays no part).
fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').expect("unclosed ${");
            let expr = &body[..end];
            let default = expr
                .split_once(":-")
                .or_else(|| expr.split_once('-'))
                .map(|(_, d)| d)
                .unwrap_or("");
            out.push_str(default);
            rest = &body[end + 1..];
        } else {
            panic!("compose: bare ${after} interpolation; use ${{NAME:-default}}");
        }
    }
    out.push_str(rest);
    out
}

/// A service's environment (map or list form), interpolated.
fn compose_env(svc: &Yaml) -> BTreeMap<String, String> {
    match svc.get("environment") {
        None => BTreeMap::new(),
        Some(Yaml::Mapping(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    s(k, "environment key").to_string(),
                    interpolate(&scalar(v).unwrap_or_default()),
                )
            })
            .collect(),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|i| {
                let (k, v) = s(i, "environment item")
                    .split_once('=')
                    .unwrap_or((s(i, "environment item"), ""));
                (k.to_string(), interpolate(v))
            })
            .collect(),
        Some(other) => panic!("compose: environment {other:?}"),
    }
}

/// Container ports a service publishes or exposes.
fn compose_container_ports(svc: &Yaml) -> Vec<u16> {
    let mut out = Vec::new();
    for key in ["ports", "expose"] {
        for p in svc
            .get(key)
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
        {
            let port = match p {
                Yaml::Mapping(_) => scalar(&p["target"]).expect("ports: target"),
                other => scalar(other)
                    .expect("port")
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_string(),
            };
            out.push(
                port.trim_end_matches("/tcp")
                    .parse()
                    .unwrap_or_else(|_| panic!("compose: port {p:?}")),
            );
        }
    }
    out
}

/// The healthcheck command of a service as one string, if it has one.
fn compose_healthcheck(svc: &Yaml) -> Option<String> {
    let hc = svc.get("healthcheck")?;
    if hc.get("disable").and_then(Yaml::as_bool) == Some(true) {
        return None;
    }
    match hc.get("test")? {
        Yaml::Sequence(parts) => Some(
            parts
                .iter()
                .skip(1)
                .map(|p| s(p, "healthcheck test").to_string())
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Yaml::String(cmd) => Some(cmd.clone()),
        other => panic!("compose: healthcheck test {other:?}"),
    }
}

/// A compose path relative to the compose file's folder, made absolute.
fn from_infra(p: &str) -> PathBuf {
    let joined = root().join("infra").join(p);
    joined
        .canonicalize()
        .unwrap_or_else(|e| panic!("compose: {p} ({}) does not exist: {e}", joined.display()))
}

/// `${NAME:-default}` defaults of the LocalStack ready hook.
fn hook_default(script: &str, var: &str) -> String {
    let marker = format!("${{{var}:-");
    let start = script
        .find(&marker)
        .unwrap_or_else(|| panic!("the ready hook does not read {var}"))
        + marker.len();
    script[start..].split('}').next().unwrap().to_string()
}

// ------------------------------------------------------------ Kubernetes

fn k8s_docs() -> Vec<(String, Yaml)> {
    let mut out = Vec::new();
    for path in files_under("infra/k8s") {
        let r = rel(&path);
        if path.file_name().unwrap() == "kustomization.yaml" {
            continue;
        }
        for d in yaml_docs(&read(&r), &r) {
            out.push((r.clone(), d));
        }
    }
    out
}

fn k8s_one<'a>(docs: &'a [(String, Yaml)], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs
        .iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(found.len(), 1, "infra/k8s: expected one {kind}");
    found[0]
}

fn name_of(d: &Yaml) -> &str {
    s(&d["metadata"]["name"], "metadata.name")
}

/// Bytes of a Kubernetes memory quantity.
fn mem_bytes(q: &str) -> u64 {
    let units = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("memory quantity {q}"))
                * mult;
        }
    }
    q.parse().unwrap_or_else(|_| panic!("memory quantity {q}"))
}

/// Millicores of a Kubernetes CPU quantity.
fn cpu_millis(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or_else(|_| panic!("cpu quantity {q}")),
        None => {
            (q.parse::<f64>()
                .unwrap_or_else(|_| panic!("cpu quantity {q}"))
                * 1000.0) as u64
        }
    }
}

/// A container port given by number or by name.
fn resolve_port(container: &Yaml, port: &Yaml) -> u16 {
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let name = s(port, "port");
    container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("infra/k8s: no container port named {name}")) as u16
}

// ------------------------------------------------------------ probe paths

/// Every HTTP path a health check, probe or scraper calls, with where it is named.
fn probe_paths() -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let img = image();
    out.entry(img.healthcheck_path)
        .or_default()
        .push("infra/Dockerfile HEALTHCHECK".into());
    let compose = yaml_file("infra/compose.yaml");
    for (name, svc) in compose["services"].as_mapping().expect("services") {
        let name = s(name, "service");
        if svc.get("image").and_then(Yaml::as_str) != Some(IMAGE) {
            continue;
        }
        if let Some(cmd) = compose_healthcheck(svc) {
            for u in urls_in(&cmd) {
                out.entry(u.path().to_string())
                    .or_default()
                    .push(format!("compose {name} healthcheck"));
            }
        }
    }
    let docs = k8s_docs();
    let dep = k8s_one(&docs, "Deployment");
    for c in dep["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("containers")
    {
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            if let Some(p) = c[probe]["httpGet"]["path"].as_str() {
                out.entry(p.to_string())
                    .or_default()
                    .push(format!("Deployment {probe}"));
            }
        }
    }
    let path = s(
        &dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"],
        "prometheus.io/path",
    );
    out.entry(path.to_string())
        .or_default()
        .push("prometheus.io/path".into());
    out
}

// ================================================================ tests

#[test]
fn every_yaml_and_json_file_under_infra_and_queues_parses() {
    let mut seen = BTreeSet::new();
    for dir in ["infra", "queues"] {
        for path in files_under(dir) {
            let r = rel(&path);
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => {
                    json_file(&r);
                }
                Some("yaml" | "yml") => {
                    assert!(
                        !yaml_docs(&read(&r), &r).is_empty(),
                        "{r}: no YAML document"
                    );
                }
                _ => continue,
            }
            seen.insert(r);
        }
    }
    for needed in [
        "infra/compose.yaml",
        "infra/k8s/kustomization.yaml",
        "infra/mapping.json",
        CLASSIC,
        QUORUM,
    ] {
        assert!(seen.contains(needed), "{needed} was not found");
    }
}

#[test]
fn every_ferry_variable_named_in_the_deployment_files_is_one_ferry_reads() {
    let known = known_variables();
    let mut files = vec![
        root().join("infra/Dockerfile"),
        root().join("infra/compose.yaml"),
    ];
    files.extend(files_under("infra/k8s"));
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        for token in ferry_tokens(&text) {
            assert!(
                known.contains(&token),
                "{}: {token} is not a variable ferry reads (src/config.rs)",
                rel(&f)
            );
        }
    }
    // The check itself sees what it should.
    assert!(
        known.contains("FERRY_SHUTDOWN_DEADLINE")
            && known.contains("FERRY_ADMIN_BIND")
            && known.contains("FERRY_LOG_JSON")
    );
    assert_eq!(
        ferry_tokens("a FERRY_X_Y=1 NOTFERRY_Z FERRY_"),
        BTreeSet::from(["FERRY_X_Y".to_string()])
    );
}

#[test]
fn the_dockerfile_builds_with_the_pinned_toolchain_and_runs_the_worker_as_non_root() {
    let img = image();
    let mut default_run = img.entrypoint[1..].to_vec();
    default_run.extend(img.cmd.clone());
    assert_cli("infra/Dockerfile ENTRYPOINT + CMD", &default_run);
    // `docker run IMAGE status` replaces CMD only.
    let mut status = img.entrypoint[1..].to_vec();
    status.push("status".into());
    assert_cli("docker run IMAGE status", &status);
    assert!(
        img.env.contains_key("FERRY_ADMIN_BIND"),
        "infra/Dockerfile: set FERRY_ADMIN_BIND (the default is loopback)"
    );
}

#[test]
fn the_compose_file_builds_the_image_and_wires_the_services_together() {
    let img = image();
    let compose = yaml_file("infra/compose.yaml");
    let services = compose["services"].as_mapping().expect("compose: services");
    let svc = |name: &str| {
        services
            .get(name)
            .unwrap_or_else(|| panic!("compose: no service {name}"))
    };
    let names: BTreeSet<&str> = services.keys().map(|k| s(k, "service name")).collect();

    // Dependencies: healthy services with real health checks.
    for (name, def) in services {
        let name = s(name, "service");
        if let Some(deps) = def.get("depends_on").and_then(Yaml::as_mapping) {
            for (dep, cond) in deps {
                let dep = s(dep, "depends_on");
                assert!(
                    names.contains(dep),
                    "compose: {name} depends on unknown service {dep}"
                );
                if cond["condition"].as_str() == Some("service_healthy") {
                    assert!(compose_healthcheck(svc(dep)).is_some(), "compose: {name} waits for {dep} to be healthy, but {dep} has no health check");
                }
            }
        }
    }

    // RabbitMQ with the management UI, and a user that may connect remotely.
    let rabbit = svc("rabbitmq");
    assert!(
        s(&rabbit["image"], "rabbitmq image").contains("management"),
        "compose: rabbitmq should be a management image"
    );
    assert!(
        compose_container_ports(rabbit).contains(&15672),
        "compose: rabbitmq management UI port 15672"
    );
    let rabbit_env = compose_env(rabbit);

    // LocalStack with S3 + DynamoDB and the repo's ready hook mounted.
    let localstack = svc("localstack");
    let ls_env = compose_env(localstack);
    let ls_services: BTreeSet<&str> = ls_env
        .get("SERVICES")
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    assert!(
        ls_services.contains("s3") && ls_services.contains("dynamodb"),
        "compose: LocalStack SERVICES should include s3,dynamodb"
    );
    let mount = localstack["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|v| s(v, "volume").to_string())
        .find(|v| v.split(':').nth(1) == Some("/etc/localstack/init/ready.d"))
        .expect("compose: localstack mounts a folder at /etc/localstack/init/ready.d");
    let hooks = from_infra(mount.split(':').next().unwrap());
    assert_eq!(
        hooks,
        root()
            .join("localstack/init/ready.d")
            .canonicalize()
            .unwrap(),
        "compose: the ready hooks mount is not localstack/init/ready.d"
    );
    let hook = hooks.join("10-ferry-stores.sh");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&hook)
            .expect("ready hook")
            .permissions()
            .mode();
        assert!(
            mode & 0o111 != 0,
            "{} must be executable (LocalStack runs hooks through their shebang)",
            hook.display()
        );
    }
    let hook_text = std::fs::read_to_string(&hook).unwrap();
    assert!(
        hook_text.starts_with("#!"),
        "the ready hook needs a shebang"
    );

    // OpenSearch, single node, no security plugin.
    let os_env = compose_env(svc("opensearch"));
    for (k, v) in [
        ("discovery.type", "single-node"),
        ("DISABLE_SECURITY_PLUGIN", "true"),
        ("DISABLE_INSTALL_DEMO_CONFIG", "true"),
    ] {
        assert_eq!(
            os_env.get(k).map(String::as_str),
            Some(v),
            "compose: opensearch {k}"
        );
    }

    // The ferry services: built from infra/Dockerfile, each a full worker.
    let mut replicas = 0;
    for (name, def) in services {
        let name = s(name, "service");
        if def.get("image").and_then(Yaml::as_str) != Some(IMAGE) && def.get("build").is_none() {
            continue;
        }
        let origin = format!("compose {name}");
        assert_eq!(def["image"].as_str(), Some(IMAGE), "{origin}: image");
        let build = &def["build"];
        let context = from_infra(s(&build["context"], "build.context"));
        assert_eq!(
            context,
            root().canonicalize().unwrap(),
            "{origin}: the build context is the repository root"
        );
        let dockerfile = context.join(s(&build["dockerfile"], "build.dockerfile"));
        assert_eq!(
            dockerfile,
            root().canonicalize().unwrap().join("infra/Dockerfile"),
            "{origin}: dockerfile"
        );

        let env = compose_env(def);
        let settings = settings_from(&origin, &env);
        let port = container_admin_port(&origin, &settings.admin_bind);
        assert_eq!(
            port, img.admin_port,
            "{origin}: admin port differs from the image's"
        );
        for p in compose_container_ports(def) {
            assert_eq!(
                p, port,
                "{origin}: publishes container port {p}, but the admin server listens on {port}"
            );
        }
        // (No index password: the local OpenSearch runs without security.)
        for secret in ["FERRY_AMQP_URL", "FERRY_ADMIN_TOKEN"] {
            assert!(env.contains_key(secret), "{origin}: {secret} is not set");
        }
        assert!(
            !settings.admin_token.is_empty(),
            "{origin}: FERRY_ADMIN_TOKEN is empty"
        );

        // Grace period longer than the shutdown deadline (Docker's default is 10s).
        let grace = def.get("stop_grace_period").map(|g| {
            humantime::parse_duration(s(g, "stop_grace_period")).expect("stop_grace_period")
        });
        let grace = grace.unwrap_or(Duration::from_secs(10));
        assert!(
            grace > settings.shutdown_deadline,
            "{origin}: stop_grace_period {grace:?} <= FERRY_SHUTDOWN_DEADLINE {:?}",
            settings.shutdown_deadline
        );

        // Files: the image's own.
        for (var, value) in [
            ("FERRY_TOPOLOGY", &settings.topology),
            ("FERRY_MAPPING", &settings.mapping),
        ] {
            if env.contains_key(var) {
                assert_in_image(&origin, var, value);
            } else {
                assert!(
                    img.env.contains_key(var),
                    "{origin}: {var} is neither set here nor in the image"
                );
            }
        }

        // Every service URL names a compose service and one of its ports.
        let aws = settings
            .aws_endpoint
            .clone()
            .unwrap_or_else(|| panic!("{origin}: FERRY_AWS_ENDPOINT (LocalStack) is not set"));
        for (var, raw) in [
            ("FERRY_INDEX_URL", settings.index_url.clone()),
            ("FERRY_AMQP_URL", settings.amqp_url.expose().to_string()),
            ("FERRY_AWS_ENDPOINT", aws),
        ] {
            let u = url::Url::parse(&raw).unwrap_or_else(|e| panic!("{origin}: {var}: {e}"));
            let host = u.host_str().unwrap_or_default();
            assert!(
                names.contains(host),
                "{origin}: {var} points at {host}, which is not a compose service"
            );
            let port = u
                .port_or_known_default()
                .or(if u.scheme() == "amqp" {
                    Some(5672)
                } else {
                    None
                })
                .expect("a port");
            assert!(
                compose_container_ports(svc(host)).contains(&port),
                "{origin}: {var} uses port {port}, which {host} does not listen on"
            );
            if var == "FERRY_AMQP_URL" {
                assert_ne!(
                    u.username(),
                    "guest",
                    "{origin}: RabbitMQ's guest user may only connect from localhost"
                );
                assert_eq!(
                    rabbit_env.get("RABBITMQ_DEFAULT_USER").map(String::as_str),
                    Some(u.username()),
                    "{origin}: AMQP user"
                );
                assert_eq!(
                    rabbit_env.get("RABBITMQ_DEFAULT_PASS").map(String::as_str),
                    u.password(),
                    "{origin}: AMQP password"
                );
            }
        }
        assert_eq!(
            env.get("AWS_ACCESS_KEY_ID").map(String::as_str),
            Some("test"),
            "{origin}: AWS_ACCESS_KEY_ID"
        );
        assert_eq!(
            env.get("AWS_SECRET_ACCESS_KEY").map(String::as_str),
            Some("test"),
            "{origin}: AWS_SECRET_ACCESS_KEY"
        );

        // The stores ferry uses are the ones the ready hook creates.
        for (var, value) in [
            ("FERRY_S3_BUCKET", &settings.s3_bucket),
            ("FERRY_DYNAMO_TABLE", &settings.dynamo_table),
            ("FERRY_LEASE_TABLE", &settings.lease_table),
        ] {
            let created = ls_env
                .get(var)
                .cloned()
                .unwrap_or_else(|| hook_default(&hook_text, var));
            assert_eq!(
                value, &created,
                "{origin}: {var} differs from what the LocalStack ready hook creates"
            );
        }

        // The command (if any) is one ferry accepts.
        let command: Vec<String> = match def.get("command") {
            Some(Yaml::Sequence(c)) => c.iter().map(|a| s(a, "command").to_string()).collect(),
            Some(other) => panic!("{origin}: command should be a list, found {other:?}"),
            None => img.cmd.clone(),
        };
        assert_cli(&origin, &command);

        if def.get("profiles").is_some() {
            continue; // one-shot jobs (seed), not replicas
        }
        replicas += 1;
        assert_eq!(
            command,
            vec!["worker"],
            "{origin}: a replica runs the worker"
        );
        let hc = compose_healthcheck(def).unwrap_or_else(|| panic!("{origin}: no health check"));
        let urls = urls_in(&hc);
        assert_eq!(urls.len(), 1, "{origin}: health check should call one URL");
        local_probe(&origin, &urls[0], port);
        for dep in ["rabbitmq", "localstack", "opensearch"] {
            assert_eq!(
                def["depends_on"][dep]["condition"].as_str(),
                Some("service_healthy"),
                "{origin}: should wait for {dep} to be healthy"
            );
        }
    }
    assert!(
        replicas >= 2,
        "compose: expected two ferry replicas, found {replicas}"
    );
}

#[test]
fn the_kubernetes_manifests_agree_with_the_image_and_each_other() {
    let img = image();
    // kustomization.yaml lists exactly the other files.
    let kust = yaml_file("infra/k8s/kustomization.yaml");
    let listed: BTreeSet<String> = kust["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| s(r, "resource").to_string())
        .collect();
    let present: BTreeSet<String> = files_under("infra/k8s")
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "infra/k8s/kustomization.yaml resources should list every manifest"
    );

    let docs = k8s_docs();
    let dep = k8s_one(&docs, "Deployment");
    let cm = k8s_one(&docs, "ConfigMap");
    let secret = k8s_one(&docs, "Secret");
    let svc = k8s_one(&docs, "Service");
    let sa = k8s_one(&docs, "ServiceAccount");

    // ConfigMap: strings only, no secrets. Secret: placeholders for the three.
    let mut env = BTreeMap::new();
    for (k, v) in cm["data"].as_mapping().expect("ConfigMap data") {
        let k = s(k, "ConfigMap key");
        let v = s(v, &format!("ConfigMap {k} (quote numbers and booleans)"));
        assert!(
            !SECRETS.contains(&k),
            "ConfigMap: {k} is a secret; it belongs in the Secret"
        );
        env.insert(k.to_string(), v.to_string());
    }
    let secret_data = secret["stringData"]
        .as_mapping()
        .expect("Secret stringData");
    for k in SECRETS {
        assert!(secret_data.contains_key(k), "Secret: {k} is missing");
    }
    for (k, v) in secret_data {
        env.insert(
            s(k, "Secret key").to_string(),
            s(v, "Secret value").to_string(),
        );
    }
    assert!(
        cm["data"].get("FERRY_SHUTDOWN_DEADLINE").is_some(),
        "ConfigMap: set FERRY_SHUTDOWN_DEADLINE explicitly"
    );

    let pod = &dep["spec"]["template"];
    let spec = &pod["spec"];
    let containers = spec["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1, "Deployment: one container");
    let c = &containers[0];
    for e in c["env"].as_sequence().into_iter().flatten() {
        let k = s(&e["name"], "env name");
        if let Some(v) = e.get("value") {
            env.insert(k.to_string(), scalar(v).unwrap_or_default());
        } else {
            assert!(
                known_variables().contains(k) || !k.starts_with("FERRY_"),
                "Deployment: {k} is not a variable ferry reads"
            );
        }
    }
    let settings = settings_from("infra/k8s (ConfigMap + Secret + env)", &env);

    // envFrom points at the real ConfigMap and Secret.
    let env_from: Vec<(&str, &str)> = c["envFrom"]
        .as_sequence()
        .expect("envFrom")
        .iter()
        .map(|e| {
            if let Some(r) = e.get("configMapRef") {
                ("ConfigMap", s(&r["name"], "configMapRef"))
            } else {
                ("Secret", s(&e["secretRef"]["name"], "secretRef"))
            }
        })
        .collect();
    assert!(
        env_from.contains(&("ConfigMap", name_of(cm))),
        "Deployment: envFrom does not reference ConfigMap {}",
        name_of(cm)
    );
    assert!(
        env_from.contains(&("Secret", name_of(secret))),
        "Deployment: envFrom does not reference Secret {}",
        name_of(secret)
    );

    // Image: the one compose builds (or a kustomize override of it).
    let image = s(&c["image"], "image");
    assert_eq!(image, IMAGE, "Deployment: image");
    for over in kust
        .get("images")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        assert_eq!(
            over["name"].as_str(),
            image.split(':').next(),
            "kustomization images: name should be the Deployment's image name"
        );
    }
    let mut run: Vec<String> = c
        .get("command")
        .and_then(Yaml::as_sequence)
        .map(|v| v.iter().map(|a| s(a, "command").to_string()).collect())
        .unwrap_or_else(|| img.entrypoint.clone());
    assert_eq!(
        run, img.entrypoint,
        "Deployment: command should stay the image's ENTRYPOINT"
    );
    run = c
        .get("args")
        .and_then(Yaml::as_sequence)
        .map(|v| v.iter().map(|a| s(a, "args").to_string()).collect())
        .unwrap_or_else(|| img.cmd.clone());
    assert_eq!(run, vec!["worker"], "Deployment: runs the worker");
    assert_cli("Deployment args", &run);

    // Replicas, files, ports and probes.
    assert_eq!(
        dep["spec"]["replicas"].as_u64(),
        Some(3),
        "Deployment: replicas"
    );
    let topology = assert_in_image("ConfigMap", "FERRY_TOPOLOGY", &settings.topology);
    assert_eq!(
        topology,
        root().join(QUORUM),
        "ConfigMap: production uses the quorum topology"
    );
    // The mapping may come from the image or from a mounted volume (a
    // production mapping with replicas).
    let mounts: Vec<String> = c["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|m| format!("{}/", s(&m["mountPath"], "mountPath").trim_end_matches('/')))
        .collect();
    if env.contains_key("FERRY_MAPPING")
        && !mounts
            .iter()
            .any(|m| settings.mapping.starts_with(m.as_str()))
    {
        assert_in_image("ConfigMap", "FERRY_MAPPING", &settings.mapping);
    }
    let port = container_admin_port("ConfigMap", &settings.admin_bind);
    assert_eq!(
        port, img.admin_port,
        "ConfigMap: admin port differs from the image's EXPOSE"
    );
    let container_ports: Vec<u16> = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| p["containerPort"].as_u64().expect("containerPort") as u16)
        .collect();
    assert_eq!(
        container_ports,
        vec![port],
        "Deployment: containerPort should be the admin port"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert!(
            get.get("path").is_some(),
            "Deployment: {probe} should be an httpGet probe"
        );
        assert_eq!(
            resolve_port(c, &get["port"]),
            port,
            "Deployment: {probe} port"
        );
    }
    if c.get("startupProbe").is_some() {
        assert_eq!(
            resolve_port(c, &c["startupProbe"]["httpGet"]["port"]),
            port,
            "Deployment: startupProbe port"
        );
    }
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz"),
        "liveness must not depend on the services"
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );

    // Prometheus scrape annotations.
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(
        ann["prometheus.io/scrape"].as_str(),
        Some("true"),
        "prometheus.io/scrape"
    );
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(port.to_string().as_str()),
        "prometheus.io/port"
    );
    assert_eq!(
        ann["prometheus.io/path"].as_str(),
        Some("/metrics"),
        "prometheus.io/path"
    );

    // Graceful termination: the kubelet waits longer than ferry's deadline.
    let grace = Duration::from_secs(
        spec["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds"),
    );
    assert!(
        grace > settings.shutdown_deadline,
        "terminationGracePeriodSeconds {grace:?} <= FERRY_SHUTDOWN_DEADLINE {:?}",
        settings.shutdown_deadline
    );

    // Resources for a worker that stays under ~150 MB RSS.
    let res = &c["resources"];
    let req_mem = mem_bytes(s(&res["requests"]["memory"], "requests.memory"));
    let lim_mem = mem_bytes(s(&res["limits"]["memory"], "limits.memory"));
    assert!(
        req_mem >= 150 << 20,
        "requests.memory below the worker's ~150 MB"
    );
    assert!(
        lim_mem >= req_mem * 3 / 2,
        "limits.memory leaves no headroom over the request"
    );
    assert!(
        cpu_millis(s(&res["requests"]["cpu"], "requests.cpu"))
            <= cpu_millis(s(&res["limits"]["cpu"], "limits.cpu"))
    );

    // Non-root (the image's user), read-only root file system.
    let psc = &spec["securityContext"];
    let csc = &c["securityContext"];
    let either = |k: &str| {
        csc.get(k)
            .or_else(|| psc.get(k))
            .cloned()
            .unwrap_or(Yaml::Null)
    };
    assert_eq!(either("runAsNonRoot").as_bool(), Some(true), "runAsNonRoot");
    assert_eq!(
        either("runAsUser").as_u64(),
        Some(img.uid),
        "runAsUser should be the image's USER"
    );
    assert_eq!(
        csc["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        csc["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "allowPrivilegeEscalation"
    );

    // Labels, Service and ServiceAccount.
    let labels = pod["metadata"]["labels"].as_mapping().expect("pod labels");
    for (k, v) in dep["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "Deployment: selector {k:?} does not match the pod labels"
        );
    }
    for (k, v) in svc["spec"]["selector"]
        .as_mapping()
        .expect("Service selector")
    {
        assert_eq!(
            labels.get(k),
            Some(v),
            "Service: selector {k:?} does not match the pod labels"
        );
    }
    for p in svc["spec"]["ports"].as_sequence().expect("Service ports") {
        assert_eq!(
            resolve_port(c, &p["targetPort"]),
            port,
            "Service: targetPort"
        );
    }
    assert_eq!(
        spec["serviceAccountName"].as_str(),
        Some(name_of(sa)),
        "Deployment: serviceAccountName"
    );
    let role = s(
        &sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "IRSA role annotation",
    );
    assert!(
        role.starts_with("arn:aws:iam::"),
        "ServiceAccount: eks.amazonaws.com/role-arn {role}"
    );
    assert!(
        !env.keys().any(|k| k.starts_with("AWS_ACCESS_KEY") || k == "AWS_SECRET_ACCESS_KEY") && settings.aws_endpoint.is_none(),
        "infra/k8s: AWS credentials come from the standard chain (IRSA), not from keys or an endpoint override"
    );
    for (var, raw) in [
        ("FERRY_INDEX_URL", settings.index_url.clone()),
        ("FERRY_AMQP_URL", settings.amqp_url.expose().to_string()),
    ] {
        let u = url::Url::parse(&raw).unwrap_or_else(|e| panic!("infra/k8s: {var}: {e}"));
        assert!(
            ["https", "amqps"].contains(&u.scheme()),
            "infra/k8s: {var} should use TLS in production"
        );
    }
}

#[test]
fn the_quorum_topology_has_the_classic_names_and_dead_letters_poison_messages() {
    let classic =
        Topology::load(root().join(CLASSIC).to_str().unwrap(), "x").expect("classic topology");
    let quorum =
        Topology::load(root().join(QUORUM).to_str().unwrap(), "x").expect("quorum topology");
    let names = QueueNames::new("x");

    let queue_names = |t: &Topology| {
        t.queues
            .iter()
            .map(|q| q.name.clone())
            .collect::<BTreeSet<_>>()
    };
    let exchange_names = |t: &Topology| {
        t.exchanges
            .iter()
            .map(|e| (e.name.clone(), e.kind.clone(), e.durable))
            .collect::<BTreeSet<_>>()
    };
    let bindings = |t: &Topology| {
        t.bindings
            .iter()
            .map(|b| {
                (
                    b.source.clone(),
                    b.destination.clone(),
                    b.routing_key.clone(),
                )
            })
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        queue_names(&classic),
        queue_names(&quorum),
        "queue names differ"
    );
    assert_eq!(
        exchange_names(&classic),
        exchange_names(&quorum),
        "exchanges differ"
    );
    assert_eq!(bindings(&classic), bindings(&quorum), "bindings differ");

    for q in &quorum.queues {
        assert!(q.durable, "{QUORUM}: {} must be durable", q.name);
        assert_eq!(
            q.arguments.get("x-queue-type"),
            Some(&Json::from("quorum")),
            "{QUORUM}: {} is not a quorum queue",
            q.name
        );
        assert!(
            !q.arguments.contains_key("x-max-priority"),
            "{QUORUM}: quorum queues have no x-max-priority"
        );
        if q.name != names.dead_letters {
            let limit = q.arguments.get("x-delivery-limit").and_then(Json::as_u64);
            assert!(
                limit.is_some_and(|l| l > 0),
                "{QUORUM}: {} needs a positive x-delivery-limit",
                q.name
            );
        }
    }
    for q in &classic.queues {
        assert_eq!(
            q.arguments.get("x-queue-type"),
            Some(&Json::from("classic")),
            "{CLASSIC}: {}",
            q.name
        );
    }

    // Both files: every work queue dead-letters into the dead-letter queue,
    // which itself dead-letters nowhere (no loop).
    for (file, t) in [(CLASSIC, &classic), (QUORUM, &quorum)] {
        for q in [&names.uploads, &names.edits, &names.migration] {
            let def = t.queues.iter().find(|d| &d.name == q).unwrap();
            let dlx = def
                .arguments
                .get("x-dead-letter-exchange")
                .and_then(Json::as_str)
                .unwrap_or_else(|| panic!("{file}: {q} has no x-dead-letter-exchange"));
            assert_eq!(dlx, names.dead_letter, "{file}: {q} dead-letters to {dlx}");
        }
        assert!(
            t.exchanges.iter().any(|e| e.name == names.dead_letter),
            "{file}: no dead-letter exchange"
        );
        assert!(
            t.bindings
                .iter()
                .any(|b| b.source == names.dead_letter && b.destination == names.dead_letters),
            "{file}: the dead-letter exchange is not bound to the dead-letter queue"
        );
        let dl = t
            .queues
            .iter()
            .find(|d| d.name == names.dead_letters)
            .unwrap();
        assert!(
            !dl.arguments.contains_key("x-dead-letter-exchange"),
            "{file}: the dead-letter queue must not dead-letter"
        );
    }

    // ferry renames the leading `ferry.` only: the files must use it.
    for file in [CLASSIC, QUORUM] {
        let raw = json_file(file);
        for key in ["queues", "exchanges"] {
            for item in raw[key].as_array().unwrap() {
                assert!(
                    item["name"].as_str().unwrap().starts_with("ferry."),
                    "{file}: {} should start with `ferry.`",
                    item["name"]
                );
            }
        }
    }
    let readme = read("queues/README.md");
    assert!(
        readme.contains("topology.quorum.json") && readme.contains("x-delivery-limit"),
        "queues/README.md should describe the quorum file"
    );
}

#[test]
fn the_readme_documents_production_with_the_same_image_name() {
    let readme = read("README.md");
    let section = readme
        .split("\n## Running in production\n")
        .nth(1)
        .expect("README: no `## Running in production` section");
    let section = section.split("\n## ").next().unwrap();
    assert!(
        section.contains(&format!("docker build -f infra/Dockerfile -t {IMAGE} .")),
        "README: the build command should tag {IMAGE}"
    );
    for needed in [
        "infra/compose.yaml",
        "infra/k8s",
        "topology.quorum.json",
        "FERRY_SHUTDOWN_DEADLINE",
        "terminationGracePeriodSeconds",
    ] {
        assert!(
            section.contains(needed),
            "README production section should mention {needed}"
        );
    }
}

// ------------------------------------------------------------ with services

async fn status_of(http: &reqwest::Client, url: &str) -> Option<u16> {
    http.get(url).send().await.ok().map(|r| r.status().as_u16())
}

/// Deletes an environment's queues and exchanges (quorum queues are not free
/// to leave behind on a shared broker).
async fn delete_topology(s: &Settings) {
    let conn =
        lapin::Connection::connect(s.amqp_url.expose(), lapin::ConnectionProperties::default())
            .await
            .expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let t = Topology::load(&s.topology, &s.queue_prefix).expect("topology");
    for q in &t.queues {
        let _ = ch
            .queue_delete(q.name.as_str().into(), Default::default())
            .await;
    }
    for e in &t.exchanges {
        let _ = ch
            .exchange_delete(e.name.as_str().into(), Default::default())
            .await;
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// The shutdown deadline the Kubernetes ConfigMap sets.
fn configmap_deadline() -> String {
    let docs = k8s_docs();
    let cm = k8s_one(&docs, "ConfigMap");
    s(
        &cm["data"]["FERRY_SHUTDOWN_DEADLINE"],
        "FERRY_SHUTDOWN_DEADLINE",
    )
    .to_string()
}

#[tokio::test]
async fn every_probe_path_is_served_by_a_real_worker() {
    let paths = probe_paths();
    for needed in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            paths.contains_key(needed),
            "no deployment file probes {needed}: {paths:?}"
        );
    }
    let env = TestEnv::new("dp").await;
    let port = support::free_port();
    let bind = format!("127.0.0.1:{port}");
    let deadline = configmap_deadline();
    let mut worker = env.spawn_worker_with(&[
        ("FERRY_ADMIN_BIND", &bind),
        ("FERRY_SHUTDOWN_DEADLINE", &deadline),
    ]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let base = format!("http://{bind}");

    // Liveness answers as soon as the server is up; metrics with it.
    eventually(Duration::from_secs(60), "GET /healthz = 200", || async {
        (status_of(&http, &format!("{base}/healthz")).await == Some(200)).then_some(())
    })
    .await;
    // Readiness once the worker is connected to everything.
    eventually(Duration::from_secs(60), "GET /readyz = 200", || async {
        (status_of(&http, &format!("{base}/readyz")).await == Some(200)).then_some(())
    })
    .await;
    for (path, named_by) in &paths {
        let status = status_of(&http, &format!("{base}{path}")).await;
        assert_eq!(
            status,
            Some(200),
            "GET {path} (named by {named_by:?}) is not served by ferry"
        );
    }
    // The check is not vacuous: an unknown path is refused.
    assert_eq!(
        status_of(&http, &format!("{base}/no-such-probe")).await,
        Some(404)
    );

    // SIGTERM: the worker exits cleanly within the grace period the
    // manifests give it.
    worker.signal(Signal::SIGTERM);
    let code = worker.wait(Duration::from_secs(45)).await;
    assert_eq!(code, Some(0), "the worker did not stop cleanly on SIGTERM");
    delete_topology(&env.settings).await;
}

#[tokio::test]
async fn a_worker_declares_the_quorum_topology_and_becomes_ready() {
    let mut env = TestEnv::new("dq").await;
    env.settings.topology = root().join(QUORUM).to_str().unwrap().to_string();
    let port = support::free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut worker = env.spawn_worker_with(&[("FERRY_ADMIN_BIND", &bind)]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Ready means connected: the broker accepted every declaration.
    eventually(
        Duration::from_secs(60),
        "GET /readyz = 200 on quorum queues",
        || async {
            (status_of(&http, &format!("http://{bind}/readyz")).await == Some(200)).then_some(())
        },
    )
    .await;
    worker.signal(Signal::SIGTERM);
    assert_eq!(worker.wait(Duration::from_secs(30)).await, Some(0));
    delete_topology(&env.settings).await;
}

#[tokio::test]
async fn the_delivery_limit_dead_letters_a_poison_message() {
    let mut env = TestEnv::new("dl").await;
    env.settings.topology = root().join(QUORUM).to_str().unwrap().to_string();
    let broker = env.broker().await;
    let t = Topology::load(&env.settings.topology, &env.settings.queue_prefix).unwrap();
    let limit = t
        .queues
        .iter()
        .find(|q| q.name == broker.names.uploads)
        .unwrap()
        .arguments["x-delivery-limit"]
        .as_u64()
        .unwrap();

    let body = br#"{"kind":"upload","id":"poison","version":1}"#;
    broker.publish_event("upload", body).await.expect("publish");
    // A consumer that fails the message every time.
    let mut consumer = broker
        .consume(&broker.names.uploads, 1, "poison")
        .await
        .expect("consume");
    let mut deliveries = 0u64;
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await {
        let d = d.expect("delivery");
        deliveries += 1;
        assert!(
            deliveries <= limit + 1,
            "delivered {deliveries} times; the limit is {limit}"
        );
        d.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .expect("nack");
    }
    assert!(
        deliveries >= limit,
        "only {deliveries} deliveries before the message left; the limit is {limit}"
    );
    eventually(
        Duration::from_secs(10),
        "the poison message in the dead-letter queue",
        || async { (broker.depth(&broker.names.dead_letters).await.ok()? == 1).then_some(()) },
    )
    .await;
    assert_eq!(broker.depth(&broker.names.uploads).await.unwrap(), 0);

    let mut dead = broker
        .consume(&broker.names.dead_letters, 1, "dead")
        .await
        .expect("consume dead letters");
    let d = tokio::time::timeout(Duration::from_secs(5), dead.next())
        .await
        .expect("a dead letter")
        .unwrap()
        .unwrap();
    assert_eq!(d.data, body, "the dead letter keeps the body");
    let reason = ferry::queue::broker::header(&d.properties, "x-first-death-reason");
    let queue = ferry::queue::broker::header(&d.properties, "x-first-death-queue");
    eprintln!("dead letter after {deliveries} deliveries: x-first-death-reason={reason:?}");
    assert_eq!(queue.as_deref(), Some(broker.names.uploads.as_str()));
    assert!(
        reason.is_some(),
        "the broker records why it dead-lettered the message"
    );
    broker.close().await;
    delete_topology(&env.settings).await;
}
