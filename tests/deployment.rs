//! The deployment files, where a mismatch would break a deployment (no
//! container can be built or run here, so they are read as data):
//!
//! - every `FERRY_*` variable named in `infra/Dockerfile`,
//!   `infra/compose.yaml` and `infra/k8s/` is a setting ferry reads, and
//!   each environment they give a worker parses as ferry parses it;
//! - the admin port, the image, the files the image holds and the grace
//!   periods agree between the three;
//! - every probe path they name is served by a real `ferry worker`.
//!
//! The queue topology files are checked in `tests/topology.rs`.

mod support;

use clap::{CommandFactory, FromArgMatches};
use ferry::config::Settings;
use serde_yaml::Value as Yaml;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::admin::Admin;
use support::{eventually, Signal, TestEnv};

/// The one image name: built by compose, run by compose and Kubernetes.
const IMAGE: &str = "ferry:latest";
/// Settings that must never be baked into the image or sit in a ConfigMap.
const SECRETS: [&str; 3] = [
    "FERRY_AMQP_URL",
    "FERRY_INDEX_PASSWORD",
    "FERRY_ADMIN_TOKEN",
];

/// Variables by name.
type Env = BTreeMap<String, String>;

// ------------------------------------------------------------ files

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// A YAML file, merge keys (`<<: *ferry`) applied.
fn yaml(rel: &str) -> Yaml {
    let mut v: Yaml =
        serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: invalid YAML: {e}"));
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
    v
}

fn str_of<'a>(v: &'a Yaml, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {v:?}"))
}

/// A YAML sequence of strings (a command, an args list).
fn strings(v: &Yaml, what: &str) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what}: expected a list, found {v:?}"))
        .iter()
        .map(|a| str_of(a, what).to_string())
        .collect()
}

/// The deployment files that name `FERRY_*` variables.
fn deployment_files() -> Vec<String> {
    let mut files = vec!["infra/Dockerfile".to_string(), "infra/compose.yaml".into()];
    for entry in std::fs::read_dir(root().join("infra/k8s")).expect("infra/k8s") {
        let name = entry.expect("entry").file_name();
        files.push(format!("infra/k8s/{}", name.to_string_lossy()));
    }
    files
}

/// Every `FERRY_...` word in a text.
fn ferry_tokens(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| w.len() > "FERRY_".len() && w.starts_with("FERRY_"))
        .collect()
}

/// Every `http://` URL in a text.
fn urls_in(text: &str) -> Vec<url::Url> {
    text.split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .filter(|w| w.starts_with("http://"))
        .map(|w| url::Url::parse(w).unwrap_or_else(|e| panic!("bad URL {w}: {e}")))
        .collect()
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
            Some((env, a.get_long()?.to_string()))
        })
        .collect()
}

/// Parses the `FERRY_*` variables of an environment the way the binary
/// would (as flags, so that this process's own environment plays no part).
fn settings_from(env: &Env) -> Result<Settings, String> {
    let flags = setting_flags();
    let mut argv = vec!["ferry".to_string()];
    for (k, v) in env.iter().filter(|(k, _)| k.starts_with("FERRY_")) {
        match k.as_str() {
            // Read by the binary itself (src/cli), not by Settings.
            "FERRY_LOG" => {
                tracing_subscriber::EnvFilter::try_new(v)
                    .map_err(|e| format!("FERRY_LOG={v:?} is not a valid filter: {e}"))?;
            }
            "FERRY_LOG_JSON" if ["true", "false", "1", "0"].contains(&v.as_str()) => {}
            "FERRY_LOG_JSON" => return Err(format!("FERRY_LOG_JSON={v:?} (use true or false)")),
            _ => {
                let long = flags
                    .get(k)
                    .ok_or_else(|| format!("{k} is not a setting ferry reads (src/config.rs)"))?;
                argv.push(format!("--{long}={v}"));
            }
        }
    }
    let cmd = <Only as CommandFactory>::command().mut_args(|a| a.env(None::<&'static str>));
    let matches = cmd
        .try_get_matches_from(&argv)
        .map_err(|e| format!("ferry refuses these settings: {e}"))?;
    Only::from_arg_matches(&matches)
        .map(|o| o.s)
        .map_err(|e| e.to_string())
}

/// `ferry <args> --help` succeeds: the arguments name a command ferry has.
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

// ------------------------------------------------------------ the image

/// What the Dockerfile gives every container run from the image.
struct Image {
    /// Its `ENV` variables.
    env: Env,
    /// The port of its `FERRY_ADMIN_BIND`.
    admin_port: u16,
    /// Its numeric `USER`.
    uid: u64,
    /// (repository source, image destination) of each `COPY` from the context.
    copies: Vec<(String, String)>,
    /// The Dockerfile with continuation lines joined.
    text: String,
}

/// The port of an admin bind address reachable from outside a container
/// (`0.0.0.0:<port>`).
fn container_admin_port(origin: &str, env: &Env) -> u16 {
    let bind = env.get("FERRY_ADMIN_BIND").unwrap_or_else(|| {
        panic!("{origin}: FERRY_ADMIN_BIND is not set (the default is loopback)")
    });
    let addr: SocketAddr = bind
        .parse()
        .unwrap_or_else(|e| panic!("{origin}: FERRY_ADMIN_BIND={bind:?}: {e}"));
    assert!(
        addr.ip().is_unspecified(),
        "{origin}: FERRY_ADMIN_BIND={bind} is not reachable from outside the container"
    );
    addr.port()
}

fn image() -> Image {
    let text = read("infra/Dockerfile").replace("\\\n", " ");
    let args_of = |ins: &str| -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(ins)?.strip_prefix(' '))
            .collect()
    };
    let mut env = Env::new();
    for args in args_of("ENV") {
        for pair in args.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("infra/Dockerfile: ENV {args}: use key=value"));
            env.insert(k.to_string(), v.trim_matches('"').to_string());
        }
    }
    let copies = args_of("COPY")
        .into_iter()
        .filter(|a| !a.starts_with("--from"))
        .flat_map(|a| {
            let words: Vec<&str> = a.split_whitespace().collect();
            let (dest, sources) = words.split_last().expect("COPY <src>... <dest>");
            sources
                .iter()
                .map(|s| (s.to_string(), dest.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let user = *args_of("USER").last().expect("infra/Dockerfile: USER");
    let uid = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("infra/Dockerfile: USER {user} should be numeric"));
    Image {
        admin_port: container_admin_port("infra/Dockerfile", &env),
        env,
        uid,
        copies,
        text,
    }
}

impl Image {
    /// The repository file an absolute path in the image comes from.
    fn source_of(&self, path: &str) -> Option<PathBuf> {
        self.copies.iter().find_map(|(src, dest)| {
            if dest.ends_with('/') {
                let rest = path.strip_prefix(dest.as_str())?;
                Some(root().join(src).join(rest))
            } else {
                (path == dest).then(|| root().join(src))
            }
        })
    }

    /// A container's environment: the image's, overridden by `over`.
    fn with(&self, over: Env) -> Env {
        let mut env = self.env.clone();
        env.extend(over);
        env
    }

    /// Checks what a container with environment `env` needs from the image:
    /// its settings parse, its files are in the image, its admin server
    /// listens on the exposed port. Returns the settings.
    fn check(&self, origin: &str, env: &Env) -> Settings {
        let settings = settings_from(env).unwrap_or_else(|e| panic!("{origin}: {e}"));
        for var in ["FERRY_TOPOLOGY", "FERRY_MAPPING"] {
            let path = env
                .get(var)
                .unwrap_or_else(|| panic!("{origin}: {var} is not set (the default is relative)"));
            let src = self.source_of(path).unwrap_or_else(|| {
                panic!("{origin}: {var}={path} is not a path infra/Dockerfile copies")
            });
            assert!(
                src.is_file(),
                "{origin}: {var}={path} comes from {src:?}, which is not a file"
            );
        }
        assert_eq!(
            container_admin_port(origin, env),
            self.admin_port,
            "{origin}: the admin port is not the image's"
        );
        settings
    }
}

// ------------------------------------------------------------ compose and Kubernetes

/// The ferry services of the compose file (the ones running the image).
fn compose_ferry_services(compose: &Yaml) -> Vec<(String, &Yaml)> {
    let services = compose["services"].as_mapping().expect("compose: services");
    services
        .iter()
        .filter(|(_, svc)| svc["image"].as_str() == Some(IMAGE))
        .map(|(name, svc)| (format!("compose {}", str_of(name, "service")), svc))
        .collect()
}

/// A compose service's environment, `${NAME:-default}` taking its default.
fn compose_env(svc: &Yaml) -> Env {
    let env = svc["environment"].as_mapping().into_iter().flatten();
    env.map(|(k, v)| {
        let v = match v {
            Yaml::String(s) => s.clone(),
            other => serde_yaml::to_string(other).unwrap().trim().to_string(),
        };
        let v = match v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
            Some(expr) => expr
                .split_once(":-")
                .map(|(_, d)| d)
                .unwrap_or("")
                .to_string(),
            None => v,
        };
        (str_of(k, "environment key").to_string(), v)
    })
    .collect()
}

fn k8s(file: &str) -> Yaml {
    yaml(&format!("infra/k8s/{file}"))
}

/// The Deployment's one container.
fn k8s_container(dep: &Yaml) -> &Yaml {
    let containers = dep["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("Deployment: containers");
    assert_eq!(containers.len(), 1, "Deployment: one container");
    &containers[0]
}

/// The environment the ConfigMap, the Secret and the container's own `env` give.
fn k8s_env() -> Env {
    let mut env = Env::new();
    let cm = k8s("configmap.yaml");
    let secret = k8s("secret.yaml");
    for (k, v) in cm["data"].as_mapping().into_iter().flatten() {
        env.insert(
            str_of(k, "ConfigMap key").into(),
            str_of(v, "ConfigMap value (quote it)").into(),
        );
    }
    for (k, v) in secret["stringData"].as_mapping().into_iter().flatten() {
        env.insert(
            str_of(k, "Secret key").into(),
            str_of(v, "Secret value").into(),
        );
    }
    let dep = k8s("deployment.yaml");
    for e in k8s_container(&dep)["env"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let value = e["value"].as_str().unwrap_or_default();
        env.insert(str_of(&e["name"], "env name").into(), value.into());
    }
    env
}

/// A container port given by number or by name.
fn resolve_port(container: &Yaml, port: &Yaml) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = str_of(port, "port");
    container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("infra/k8s: no container port named {name}"))
}

/// Every HTTP path a health check, probe or scraper calls, with who names it.
fn probe_paths() -> BTreeMap<String, Vec<String>> {
    let mut named: Vec<(String, String)> = Vec::new();
    for u in urls_in(&image().text) {
        named.push((u.path().into(), "infra/Dockerfile HEALTHCHECK".into()));
    }
    let compose = yaml("infra/compose.yaml");
    for (origin, svc) in compose_ferry_services(&compose) {
        let test = serde_yaml::to_string(&svc["healthcheck"]["test"]).unwrap();
        for u in urls_in(&test) {
            named.push((u.path().into(), format!("{origin} healthcheck")));
        }
    }
    let dep = k8s("deployment.yaml");
    let c = k8s_container(&dep);
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        if let Some(p) = c[probe]["httpGet"]["path"].as_str() {
            named.push((p.into(), format!("Deployment {probe}")));
        }
    }
    let ann = &dep["spec"]["template"]["metadata"]["annotations"];
    named.push((
        str_of(&ann["prometheus.io/path"], "prometheus.io/path").into(),
        "prometheus.io/path".into(),
    ));
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, by) in named {
        out.entry(path).or_default().push(by);
    }
    out
}

// ================================================================ tests

#[test]
fn every_ferry_variable_in_the_deployment_files_is_a_setting_ferry_reads() {
    let mut known: BTreeSet<String> = setting_flags().into_keys().collect();
    known.extend(["FERRY_LOG".to_string(), "FERRY_LOG_JSON".to_string()]);
    for file in deployment_files() {
        for token in ferry_tokens(&read(&file)) {
            assert!(
                known.contains(token),
                "{file}: {token} is not a variable ferry reads (src/config.rs)"
            );
        }
    }
    assert_eq!(
        ferry_tokens("a FERRY_X_Y=1 NOTFERRY_Z FERRY_ ${FERRY_ADMIN_TOKEN:-x}"),
        BTreeSet::from(["FERRY_X_Y", "FERRY_ADMIN_TOKEN"]),
        "the token scanner"
    );
}

#[test]
fn the_settings_check_refuses_what_ferry_refuses() {
    const CASES: &[(&str, &str, &str)] = &[
        ("FERRY_NO_SUCH_SETTING", "1", "not a setting ferry reads"),
        ("FERRY_SHUTDOWN_DEADLINE", "soon", "shutdown-deadline"),
        ("FERRY_CONCURRENCY", "many", "concurrency"),
        ("FERRY_MAX_QUEUED", "20000", "max-queued"),
        ("FERRY_LOG", "info,=[", "not a valid filter"),
        ("FERRY_LOG_JSON", "yes", "use true or false"),
    ];
    for (var, value, says) in CASES {
        let env = Env::from([(var.to_string(), value.to_string())]);
        match settings_from(&env) {
            Ok(_) => panic!("{var}={value} was accepted"),
            Err(e) => assert!(e.contains(says), "{var}={value}: expected {says:?} in: {e}"),
        }
    }
    let good = Env::from([("FERRY_SHUTDOWN_DEADLINE".to_string(), "30s".to_string())]);
    assert_eq!(
        settings_from(&good)
            .expect("a valid setting")
            .shutdown_deadline,
        Duration::from_secs(30)
    );
}

#[test]
fn the_dockerfile_builds_ferry_and_runs_the_worker_on_the_admin_port() {
    let img = image();
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| {
            Some(
                l.strip_prefix("rust-version = ")?
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .expect("Cargo.toml: rust-version");
    let port = img.admin_port;
    // (what the Dockerfile must say, why)
    let cases = [
        (
            format!("FROM rust:{rust_version}"),
            "the toolchain of Cargo.toml's rust-version",
        ),
        (
            "cargo build --release --locked".into(),
            "a locked release build",
        ),
        (
            "COPY --from=build /usr/local/bin/ferry /usr/local/bin/ferry".into(),
            "ferry on PATH",
        ),
        (format!("EXPOSE {port}"), "the port of FERRY_ADMIN_BIND"),
        (
            format!("http://127.0.0.1:{port}/"),
            "the health check on the admin port",
        ),
        (
            r#"ENTRYPOINT ["ferry"]"#.into(),
            "`docker run IMAGE status` replaces the command only",
        ),
        (
            r#"CMD ["worker"]"#.into(),
            "the default command is the worker",
        ),
    ];
    for (needed, why) in &cases {
        assert!(
            img.text.contains(needed.as_str()),
            "infra/Dockerfile: no `{needed}` ({why})"
        );
    }
    assert_ne!(img.uid, 0, "infra/Dockerfile: USER is root");
    for secret in SECRETS {
        assert!(
            !img.env.contains_key(secret),
            "infra/Dockerfile: {secret} is a secret; it must not be baked into the image"
        );
    }
    img.check("infra/Dockerfile ENV", &img.env);
    assert_cli("infra/Dockerfile CMD", &["worker".into()]);

    // Everything copied from the context exists and the dockerignore lets it in.
    let ignore = read("infra/Dockerfile.dockerignore");
    let let_in: BTreeSet<&str> = ignore
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    assert!(
        ignore.lines().any(|l| l == "*"),
        "infra/Dockerfile.dockerignore: expected `*` then `!` lines"
    );
    let sources: Vec<&str> = img.copies.iter().map(|(src, _)| src.as_str()).collect();
    for needed in ["Cargo.toml", "Cargo.lock", "src/"] {
        assert!(
            sources.contains(&needed),
            "infra/Dockerfile: the build does not copy {needed}"
        );
    }
    for src in sources {
        assert!(
            root().join(src).exists(),
            "infra/Dockerfile copies {src}, which does not exist"
        );
        assert!(
            let_in.contains(src.trim_end_matches('/')),
            "infra/Dockerfile copies {src}, which infra/Dockerfile.dockerignore leaves out"
        );
    }
}

#[test]
fn the_compose_replicas_run_the_image_on_its_port_and_reach_the_other_services() {
    let img = image();
    let compose = yaml("infra/compose.yaml");
    let services = compose["services"].as_mapping().expect("compose: services");
    let ferry = compose_ferry_services(&compose);
    assert!(
        ferry.len() >= 3,
        "compose: expected two replicas and the seed job"
    );
    let rabbit = compose_env(&compose["services"]["rabbitmq"]);
    for (origin, svc) in ferry {
        assert_eq!(
            svc["build"]["dockerfile"].as_str(),
            Some("infra/Dockerfile"),
            "{origin}: build.dockerfile"
        );
        let env = img.with(compose_env(svc));
        let settings = img.check(&origin, &env);
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            let published = str_of(p, "port");
            assert!(
                published.ends_with(&format!(":{}", img.admin_port)),
                "{origin}: publishes {published}, but the admin server listens on {}",
                img.admin_port
            );
        }
        let health = serde_yaml::to_string(&svc["healthcheck"]["test"]).unwrap();
        for u in urls_in(&health) {
            assert_eq!(u.port(), Some(img.admin_port), "{origin}: health check {u}");
        }
        let grace =
            humantime::parse_duration(str_of(&svc["stop_grace_period"], "stop_grace_period"))
                .expect("stop_grace_period");
        assert!(
            grace > settings.shutdown_deadline,
            "{origin}: stop_grace_period {grace:?} <= FERRY_SHUTDOWN_DEADLINE {:?}",
            settings.shutdown_deadline
        );
        let command = match svc.get("command") {
            Some(c) => strings(c, "command"),
            None => vec!["worker".into()],
        };
        assert_cli(&origin, &command);

        // Every service URL names a compose service and a port it publishes or uses.
        for var in ["FERRY_INDEX_URL", "FERRY_AMQP_URL", "FERRY_AWS_ENDPOINT"] {
            let raw = env
                .get(var)
                .unwrap_or_else(|| panic!("{origin}: {var} is not set"));
            let u = url::Url::parse(raw).unwrap_or_else(|e| panic!("{origin}: {var}: {e}"));
            let host = u.host_str().unwrap_or_default();
            let target = services.get(host).unwrap_or_else(|| {
                panic!("{origin}: {var} points at {host}, not a compose service")
            });
            let port = u.port().expect("an explicit port");
            let listens = serde_yaml::to_string(&target["ports"]).unwrap();
            assert!(
                listens.contains(&format!(":{port}")),
                "{origin}: {var} uses port {port}, which {host} does not publish"
            );
        }
        let amqp = url::Url::parse(&env["FERRY_AMQP_URL"]).unwrap();
        assert_eq!(
            (Some(amqp.username()), amqp.password()),
            (
                rabbit.get("RABBITMQ_DEFAULT_USER").map(String::as_str),
                rabbit.get("RABBITMQ_DEFAULT_PASS").map(String::as_str)
            ),
            "{origin}: the AMQP user is not RabbitMQ's (guest may only connect from localhost)"
        );
    }
}

#[test]
fn the_kubernetes_manifests_run_the_image_on_its_port_with_their_own_objects() {
    let img = image();
    let kust = k8s("kustomization.yaml");
    let listed: BTreeSet<String> = strings(&kust["resources"], "resources")
        .into_iter()
        .collect();
    let present: BTreeSet<String> = deployment_files()
        .iter()
        .filter_map(|f| f.strip_prefix("infra/k8s/"))
        .filter(|f| *f != "kustomization.yaml")
        .map(str::to_string)
        .collect();
    assert_eq!(
        listed, present,
        "infra/k8s/kustomization.yaml should list every manifest"
    );

    let dep = k8s("deployment.yaml");
    let pod = &dep["spec"]["template"];
    let c = k8s_container(&dep);
    let env = img.with(k8s_env());
    let settings = img.check("infra/k8s", &env);
    for secret in SECRETS {
        assert!(
            k8s("configmap.yaml")["data"].get(secret).is_none(),
            "ConfigMap: {secret} is a secret; it belongs in the Secret"
        );
    }
    assert_eq!(c["image"].as_str(), Some(IMAGE), "Deployment: image");
    for over in kust["images"].as_sequence().into_iter().flatten() {
        assert_eq!(
            over["name"].as_str(),
            IMAGE.split(':').next(),
            "kustomization images: name"
        );
    }
    assert!(
        c.get("command").is_none(),
        "Deployment: command should stay the image's ENTRYPOINT"
    );
    assert_cli("Deployment args", &strings(&c["args"], "args"));

    // The objects the pod refers to are the ones in these files.
    let name = |file: &str| str_of(&k8s(file)["metadata"]["name"], "metadata.name").to_string();
    let refs = [
        (&c["envFrom"][0]["configMapRef"]["name"], "configmap.yaml"),
        (&c["envFrom"][1]["secretRef"]["name"], "secret.yaml"),
        (&pod["spec"]["serviceAccountName"], "serviceaccount.yaml"),
    ];
    for (reference, file) in refs {
        assert_eq!(
            reference.as_str(),
            Some(name(file).as_str()),
            "Deployment: refers to {file}"
        );
    }
    let labels = &pod["metadata"]["labels"];
    let svc = k8s("service.yaml");
    for selector in [
        &dep["spec"]["selector"]["matchLabels"],
        &svc["spec"]["selector"],
    ] {
        for (k, v) in selector.as_mapping().expect("selector") {
            assert_eq!(
                labels.get(k),
                Some(v),
                "selector {k:?} does not match the pod labels"
            );
        }
    }

    // One port: the admin server's, everywhere it is named.
    let port = u64::from(img.admin_port);
    let mut ports = vec![(
        "Service targetPort",
        resolve_port(c, &svc["spec"]["ports"][0]["targetPort"]),
    )];
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        ports.push((probe, resolve_port(c, &c[probe]["httpGet"]["port"])));
    }
    let scrape = str_of(
        &pod["metadata"]["annotations"]["prometheus.io/port"],
        "prometheus.io/port",
    );
    ports.push(("prometheus.io/port", scrape.parse().expect("a port number")));
    for (what, p) in ports {
        assert_eq!(p, port, "Deployment: {what} is not the admin port");
    }

    let spec = &pod["spec"];
    let grace = spec["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        Duration::from_secs(grace) > settings.shutdown_deadline,
        "terminationGracePeriodSeconds {grace} <= FERRY_SHUTDOWN_DEADLINE {:?}",
        settings.shutdown_deadline
    );
    assert_eq!(
        spec["securityContext"]["runAsUser"].as_u64(),
        Some(img.uid),
        "runAsUser should be the image's USER (runAsNonRoot checks it)"
    );
}

#[tokio::test]
async fn every_probe_path_is_served_by_a_real_worker() {
    let paths = probe_paths();
    for needed in ["/healthz", "/readyz", "/metrics"] {
        assert!(
            paths.contains_key(needed),
            "no deployment file names {needed}: {paths:?}"
        );
    }
    let deadline = k8s_env()["FERRY_SHUTDOWN_DEADLINE"].clone();
    let env = TestEnv::new("dp").await;
    let mut admin = Admin::spawn(&env, &[("FERRY_SHUTDOWN_DEADLINE", &deadline)]);
    admin.wait_status("/healthz", 200).await;
    admin.wait_status("/readyz", 200).await;
    for (path, named_by) in &paths {
        assert_eq!(
            admin.status(path).await,
            Some(200),
            "GET {path} (named by {named_by:?})"
        );
    }
    // The check is not vacuous: an unknown path is refused.
    assert_eq!(admin.status("/no-such-probe").await, Some(404));
    // What Prometheus scrapes parses as Prometheus text, labels included.
    eventually(
        Duration::from_secs(30),
        "ferry_queue_depth in /metrics",
        || async {
            let m = admin.metrics().await?;
            let depth = |s: &&prometheus_parse::Sample| {
                s.metric == "ferry_queue_depth" && s.labels.get("queue") == Some("dead_letters")
            };
            m.samples.iter().find(depth).map(|_| ())
        },
    )
    .await;

    // SIGTERM: the worker exits cleanly within the grace period the
    // manifests give it.
    admin.worker.signal(Signal::SIGTERM);
    let code = admin.worker.wait(Duration::from_secs(45)).await;
    assert_eq!(code, Some(0), "the worker did not stop cleanly on SIGTERM");
    support::delete_topology(&env.settings).await;
}
