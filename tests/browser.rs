//! The support web page in a real browser (headless Chromium through
//! chromedriver): failures grouped by message, looking up a record by
//! clicking an example or typing an id, retrying with the admin token, a
//! wrong token changing nothing, and failure messages shown as text, never
//! run as markup.

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use ferry::index::records::{self, Outcome};
use ferry::index::Target;
use ferry::ops::lifecycle::Progress;
use ferry::types::{DocId, IndexName};
use futures::FutureExt;
use serde_json::{json, Value};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::process::Stdio;
use std::time::Duration;
use support::{eventually, TestEnv, Worker};

const TOKEN: &str = "secret";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the browser waits for an element after a navigation.
const PAGE: Duration = Duration::from_secs(20);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// A chromedriver process of this test (killed when dropped) and its
/// browser profile directory.
struct Driver {
    _child: tokio::process::Child,
    profile: tempfile::TempDir,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = support::free_port();
        let child = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = http();
        eventually(Duration::from_secs(30), "chromedriver is ready", || async {
            let r = http.get(format!("{url}/status")).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            (v["value"]["ready"] == json!(true)).then_some(())
        })
        .await;
        Driver {
            _child: child,
            profile: tempfile::tempdir().expect("profile dir"),
            url,
        }
    }

    /// A headless Chromium session.
    async fn browser(&self) -> Client {
        let profile = self
            .profile
            .path()
            .to_str()
            .expect("utf-8 path")
            .to_string();
        let caps = json!({ "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={profile}"),
            ],
        }});
        let Value::Object(caps) = caps else {
            unreachable!("an object")
        };
        ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

/// Runs `body` with a browser and always ends the session (so that no
/// Chromium outlives the test), then re-raises a failure.
async fn with_browser<F, Fut>(body: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let driver = Driver::start().await;
    let client = driver.browser().await;
    let outcome = AssertUnwindSafe(body(client.clone())).catch_unwind().await;
    let _ = client.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A worker with the admin server and token.
fn admin_worker(env: &TestEnv) -> (Worker, String) {
    let bind = format!("127.0.0.1:{}", support::free_port());
    let worker =
        env.spawn_worker_with(&[("FERRY_ADMIN_BIND", &bind), ("FERRY_ADMIN_TOKEN", TOKEN)]);
    (worker, format!("http://{bind}"))
}

async fn wait_page(base: &str) {
    let http = http();
    eventually(
        Duration::from_secs(30),
        "the admin server serves the page",
        || async {
            let r = http.get(format!("{base}/")).send().await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
}

async fn cli_ok(env: &TestEnv, args: &[&str]) -> String {
    let (code, out, err) = env.cli(args).await;
    assert_eq!(
        code,
        0,
        "`ferry {}` failed\nstdout: {out}\nstderr: {err}",
        args.join(" ")
    );
    out
}

async fn progress(env: &TestEnv, target: &IndexName) -> Progress {
    let current = env.current_index().await;
    ferry::ops::lifecycle::progress(&env.ctx, &current, target)
        .await
        .expect("progress")
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(PAGE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .text()
        .await
        .expect("text")
}

/// Waits until the element's text satisfies `want` (a click may still be
/// navigating away from a page that has the same element).
async fn wait_text(client: &Client, css: &str, want: impl Fn(&str) -> bool) -> String {
    eventually(PAGE, &format!("the expected text in {css}"), || async {
        let t = client
            .find(Locator::Css(css))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        want(&t).then_some(t)
    })
    .await
}

/// Loads the support page.
async fn open(client: &Client, base: &str) {
    client
        .goto(&format!("{base}/"))
        .await
        .expect("load the page");
}

/// Clicks the first element matching `css`.
async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .click()
        .await
        .expect("click");
}

/// The text of the element matching `css` inside `row`.
async fn text_in(row: &fantoccini::elements::Element, css: &str) -> String {
    row.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} in the row: {e}"))
        .text()
        .await
        .expect("text")
}

/// Loads the page, types `token` into the first failure group's form and
/// clicks its retry button.
async fn retry_first_group(client: &Client, base: &str, token: &str) {
    open(client, base).await;
    let row = client
        .find(Locator::Css("#failures tr.group"))
        .await
        .expect("a row");
    row.find(Locator::Css("input[name=token]"))
        .await
        .expect("token field")
        .send_keys(token)
        .await
        .expect("type");
    row.find(Locator::Css("button.retry"))
        .await
        .expect("retry button")
        .click()
        .await
        .expect("click");
}

#[tokio::test]
async fn support_page_shows_failures_looks_up_records_and_retries() {
    let env = TestEnv::new("op").await;
    // 8 broken in 5 ways: groups of 2, 2, 2, 1 and 1.
    let ids = env.seed(20, 8).await;
    let (_worker, base) = admin_worker(&env);
    cli_ok(&env, &["start"]).await;
    let target = env.migration_index().await;
    eventually(
        Duration::from_secs(60),
        "8 failures recorded, nothing to go",
        || async {
            let p = progress(&env, &target).await;
            (p.to_go == 0 && p.failed == 8 && p.migrated == 12).then_some(())
        },
    )
    .await;
    wait_page(&base).await;
    let scope = ferry::ops::failures::scope(&env.ctx, false)
        .await
        .expect("scope");
    let overview = ferry::ops::failures::overview(&env.ctx, scope.clone())
        .await
        .expect("overview");
    // One of the broken documents has path characters in its id.
    let special = ids
        .iter()
        .find(|i| i.as_str().contains('?'))
        .expect("an id with path characters")
        .clone();
    let special_record = ferry::ops::failures::show(&env.ctx, scope, &special)
        .await
        .expect("record");
    let Some(Outcome::Failed(special_message)) = special_record.outcome else {
        panic!("{special} should have failed: {special_record:?}");
    };
    let (env_ref, target_ref) = (&env, &target);

    with_browser(|client| async move {
        open(&client, &base).await;
        assert_eq!(text_of(&client, "#phase").await, "InProgress");

        // One row per message, with its count, message and example links.
        let rows = client
            .find_all(Locator::Css("#failures tr.group"))
            .await
            .expect("rows");
        assert_eq!(rows.len(), 5);
        assert_eq!(rows.len(), overview.groups.len());
        for (row, group) in rows.iter().zip(&overview.groups) {
            assert_eq!(text_in(row, ".count").await, group.count.to_string());
            assert_eq!(text_in(row, ".message").await, group.key);
            let mut links = Vec::new();
            for a in row
                .find_all(Locator::Css("a.example"))
                .await
                .expect("examples")
            {
                links.push(a.text().await.expect("text"));
            }
            let want: Vec<String> = group.examples.iter().map(DocId::to_string).collect();
            assert_eq!(links, want);
        }

        // Clicking an example shows its record.
        let first = &overview.groups[0];
        let example = rows[0]
            .find(Locator::Css("a.example"))
            .await
            .expect("an example");
        example.click().await.expect("click the example");
        let record = text_of(&client, "#record").await;
        assert!(record.contains(first.examples[0].as_str()), "{record}");
        assert!(
            record.contains(&format!("failed: {}", first.key)),
            "{record}"
        );

        // Typing an id (with path characters) into the lookup form.
        open(&client, &base).await;
        let input = client
            .find(Locator::Css("form[method=get] input[name=id]"))
            .await
            .expect("the lookup field");
        input
            .send_keys(special.as_str())
            .await
            .expect("type the id");
        click(&client, "form[method=get] button[type=submit]").await;
        let record = text_of(&client, "#record").await;
        assert!(record.contains(special.as_str()), "{record}");
        assert!(
            record.contains(&format!("failed: {special_message}")),
            "{record}"
        );

        // A wrong token: the 401 page, nothing cleared.
        retry_first_group(&client, &base, "wrong").await;
        wait_text(&client, "h1", |t| t == "Wrong or missing admin token").await;
        assert!(client
            .source()
            .await
            .expect("source")
            .contains("Nothing was changed"));
        assert_eq!(
            progress(env_ref, target_ref).await.failed,
            8,
            "nothing was cleared"
        );
        // The same without a browser: a wrong or missing token is a 401.
        let message = ferry::index::client::segment(&first.key);
        for form in [
            format!("token=wrong&message={message}"),
            format!("message={message}"),
        ] {
            let r = http()
                .post(format!("{base}/ui/retry"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.clone())
                .send()
                .await
                .expect("POST /ui/retry");
            assert_eq!(r.status().as_u16(), 401, "{form}");
        }
        assert_eq!(progress(env_ref, target_ref).await.failed, 8);

        // The right token: the flash message reports what was cleared.
        retry_first_group(&client, &base, TOKEN).await;
        let flash = text_of(&client, "p.flash").await;
        assert_eq!(
            flash,
            format!(
                "cleared {n} record(s), queued {n} document(s) again",
                n = first.count
            )
        );

        let png = client.screenshot().await.expect("screenshot");
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("support-page.png");
        std::fs::write(&file, &png).expect("write the screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        assert!(
            std::fs::metadata(&file).expect("screenshot file").len() > 5_000,
            "a rendered page, not a blank one"
        );
    })
    .await;

    // Still broken: the worker records the retried failures again.
    eventually(
        Duration::from_secs(60),
        "the retried documents fail again",
        || async {
            let p = progress(&env, &target).await;
            (p.to_go == 0 && p.failed == 8).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn failure_messages_are_shown_as_text_never_run() {
    let env = TestEnv::new("op").await;
    let ids = env.seed(5, 0).await;
    // Paused before any worker runs: nothing is migrated, so the record
    // written by hand below is the only outcome.
    cli_ok(&env, &["start"]).await;
    cli_ok(&env, &["pause"]).await;
    let target = env.migration_index().await;
    let evil = "<script>window.pwned=1</script>";
    let id = &ids[2];
    env.ctx
        .index
        .update_partial(
            &Target::Alias(env.settings.current_alias.clone()),
            id,
            &records::failure(&target, evil),
            None,
        )
        .await
        .expect("write a failure record by hand");
    assert_eq!(progress(&env, &target).await.failed, 1);
    let (_worker, base) = admin_worker(&env);
    wait_page(&base).await;

    with_browser(|client| async move {
        open(&client, &base).await;
        let message = text_of(&client, "#failures tr.group .message").await;
        assert_eq!(message, evil, "the message is shown literally");
        let pwned = client
            .execute("return typeof window.pwned", vec![])
            .await
            .expect("run JS");
        assert_eq!(
            pwned,
            json!("undefined"),
            "the message was not run as a script"
        );
        let html = client.source().await.expect("source");
        assert!(
            html.contains("&lt;script&gt;window.pwned=1&lt;/script&gt;"),
            "escaped in the markup"
        );

        // The record page too.
        client.refresh().await.expect("reload");
        click(&client, "a.example").await;
        let record = text_of(&client, "#record .message").await;
        assert_eq!(record, evil);
        let pwned = client
            .execute("return typeof window.pwned", vec![])
            .await
            .expect("run JS");
        assert_eq!(pwned, json!("undefined"));
    })
    .await;
}

/// The operator's buttons (issue #21): typed token, click, the outcome on
/// the page, and the action in the History table.
#[tokio::test]
async fn operator_buttons_pause_resume_and_show_refusals() {
    let env = TestEnv::new("ob").await;
    // One broken document: its failure keeps `complete` refused.
    env.seed(5, 1).await;
    let (_worker, base) = admin_worker(&env);
    cli_ok(&env, &["start"]).await;
    wait_page(&base).await;
    let press = |client: Client, op: &'static str, token: &'static str| {
        let base = base.clone();
        async move {
            open(&client, &base).await;
            let form = client
                .find(Locator::Css("#operate"))
                .await
                .expect("the operator's buttons");
            form.find(Locator::Css("input[name=token]"))
                .await
                .expect("token field")
                .send_keys(token)
                .await
                .expect("type");
            form.find(Locator::Css(&format!("button[value={op}]")))
                .await
                .unwrap_or_else(|e| panic!("no {op} button: {e}"))
                .click()
                .await
                .expect("click");
        }
    };
    with_browser(|client| async move {
        press(client.clone(), "pause", TOKEN).await;
        wait_text(&client, ".flash", |t| t.contains("is now paused")).await;
        assert_eq!(text_of(&client, "#phase").await, "Paused");
        press(client.clone(), "complete", TOKEN).await;
        wait_text(&client, ".flash", |t| t.starts_with("refused: ")).await;
        press(client.clone(), "resume", TOKEN).await;
        wait_text(&client, ".flash", |t| t.contains("now not paused")).await;
        let history = text_of(&client, "#history").await;
        for line in ["resume", "complete", "pause"] {
            assert!(
                history.contains(line),
                "{line} not in the history: {history}"
            );
        }
        assert!(history.contains("the support page"), "{history}");
    })
    .await;
}
