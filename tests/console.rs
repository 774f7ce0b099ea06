//! The web console (`/console`, docs/console.md) in a real browser: headless Chromium
//! driven through chromedriver (tests/common/webdriver.rs) against a real `cairn`
//! process. A person's path through it: sign in, watch a live append arrive in the
//! event browser, move through a stream's history with the slider, roll a projection
//! back with its button, and the operator's tenants; the same page at a phone's width.
//! Screenshots of each step land in `target/console-screenshots/<test>/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them): without them these tests fail with a
//! message saying so. Every wait is for a condition, bounded generously.

mod common;
#[allow(dead_code)]
#[path = "common/webdriver.rs"]
mod webdriver;

use std::time::{Duration, Instant};

use common::{Server, body_of, expect, plugin_bytes};
use reqwest::StatusCode;
use serde_json::{Value, json};
use webdriver::{Browser, PATIENCE};

const HOME: &str = "\u{E011}";
const RIGHT: &str = "\u{E014}";

/// A tenant `acme` with the `account` aggregate and one account's history:
/// opened by ann (v1), deposits of 50 (v2) and 25 (v3), a withdrawal of 30 (v4).
async fn acme(server: &Server) -> String {
    let token = server.tenant_with_account("acme").await;
    for command in [
        json!({"type": "Open", "payload": {"owner": "ann"}}),
        json!({"type": "Deposit", "payload": {"amount": 50}}),
        json!({"type": "Deposit", "payload": {"amount": 25}}),
        json!({"type": "Withdraw", "payload": {"amount": 30}}),
    ] {
        let (status, body) = server
            .command_answer(&token, "acme", "account", "1", command)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    token
}

async fn sign_in(browser: &Browser, server: &Server, token: &str, tenant: &str) {
    browser.goto(&server.url("/console")).await;
    browser.wait_for("#signin-token").await;
    browser.type_into("#signin-token", token).await;
    browser.type_into("#signin-tenant", tenant).await;
    browser.click("#signin-submit").await;
    browser.wait_for("#tabs").await;
}

async fn projection(server: &Server, token: &str) -> Value {
    expect(
        server.get("/t/acme/projections/balances", token).await,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn a_tenant_follows_a_live_append_travels_in_time_and_rolls_a_projection_back() {
    let server = Server::start().await;
    let token = acme(&server).await;
    let browser = Browser::start("tenant", 1280, 900).await;

    // Sign in with the tenant's token.
    browser.goto(&server.url("/console")).await;
    browser.wait_for("#signin-token").await;
    browser.screenshot("01-sign-in").await;
    sign_in(&browser, &server, &token, "acme").await;
    browser
        .wait_text("#who", "the tenant signed in", |t| t == "tenant acme")
        .await;

    // The event browser shows the log, then follows a live append.
    browser.click("[data-tab=events]").await;
    browser
        .wait_for("#events-table tr[data-position='4']")
        .await;
    browser.click("#events-live").await;
    browser
        .wait_text("#events-state", "live following", |t| {
            t == "live: following"
        })
        .await;
    browser.screenshot("02-events-live").await;
    let appended = server
        .append(
            &token,
            "acme",
            "order-77",
            json!({"events": [{"type": "OrderPlaced", "data": {"item": "rope", "marker": "seen-live"}}]}),
        )
        .await;
    expect(appended, StatusCode::OK).await;
    let row = browser
        .wait_text(
            "#events-table tr[data-type='OrderPlaced']",
            "the live append",
            |t| t.contains("seen-live"),
        )
        .await;
    assert!(row.contains("order-77") && row.starts_with('5'), "{row}");
    browser.screenshot("03-live-append-arrived").await;
    browser.click("#events-live").await; // live off

    // The stream view: the slider through account 1's history.
    browser.click("[data-tab=stream]").await;
    browser
        .wait_for("#stream-aggregate option[value=account]")
        .await;
    browser.type_into("#stream-id", "1").await;
    browser.click("#stream-open").await;
    browser
        .wait_text("#stream-head", "the stream's head", |t| t == "4")
        .await;
    let state = browser
        .wait_text("#stream-state", "the latest state", |t| {
            t.contains("\"balance\": 45")
        })
        .await;
    assert!(state.contains("ann"), "{state}");
    let slider = browser.wait_for("#stream-slider").await;
    browser.send_keys(&slider, HOME).await;
    browser
        .wait_text("#stream-version", "version 1", |t| t == "1")
        .await;
    browser
        .wait_text("#stream-state", "the state at version 1", |t| {
            t.contains("\"balance\": 0") && t.contains("\"owner\": \"ann\"")
        })
        .await;
    browser.screenshot("04-stream-at-version-1").await;
    browser.send_keys(&slider, &RIGHT.repeat(2)).await;
    browser
        .wait_text("#stream-version", "version 3", |t| t == "3")
        .await;
    browser
        .wait_text("#stream-state", "the state at version 3", |t| {
            t.contains("\"balance\": 75")
        })
        .await;
    assert_eq!(
        browser.property("#stream-state", "dataset").await["version"],
        "3"
    );
    browser.screenshot("05-stream-at-version-3").await;
    // The state the page shows is the API's.
    let (_, at3) = body_of(
        server
            .get("/t/acme/aggregates/account/1?version=3", &token)
            .await,
    )
    .await;
    assert_eq!(at3["state"]["balance"], 75);

    // Projections: balances v1, then balances-v2 takes over; roll back to v1.
    for (plugin, version) in [("balances", 1), ("balances-v2", 2)] {
        let (status, body) = body_of(
            server
                .upload(&token, "acme", "balances", plugin_bytes(plugin))
                .await,
        )
        .await;
        assert!(status.is_success(), "{plugin}: {status} {body}");
        assert_eq!(body["version"], version, "{body}");
        let started = Instant::now();
        while projection(&server, &token).await["active_version"] != version {
            assert!(
                started.elapsed() < PATIENCE,
                "balances v{version} never became active"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    browser.click("[data-tab=projections]").await;
    browser
        .wait_for(".card[data-projection=balances][data-active-version='2']")
        .await;
    browser
        .wait_text(
            ".card[data-projection=balances] .active-summary",
            "v2 active",
            |t| t.starts_with("active v2"),
        )
        .await;
    browser.screenshot("06-projection-v2-active").await;
    browser
        .click("button[data-action=promote][data-projection=balances][data-version='1']")
        .await;
    browser
        .wait_for(".card[data-projection=balances][data-active-version='1']")
        .await;
    browser
        .wait_text(
            ".card[data-projection=balances] .active-summary",
            "v1 active",
            |t| t.starts_with("active v1"),
        )
        .await;
    browser
        .wait_for(".card[data-projection=balances] tr[data-version='1'][data-status=active]")
        .await;
    browser.screenshot("07-projection-rolled-back-to-v1").await;
    let status = projection(&server, &token).await;
    assert_eq!(status["active_version"], 1, "the API agrees: {status}");

    // The same page at a phone's width.
    browser.resize(390, 844).await;
    browser
        .wait_for(".card[data-projection=balances] canvas")
        .await;
    browser.screenshot("08-projections-phone-width").await;
    let overflow = browser
        .script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        )
        .await;
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 0),
        "the page scrolls sideways at a phone's width by {overflow}px"
    );
}

#[tokio::test]
async fn the_operator_sees_tenants_and_usage_and_a_wrong_token_is_refused() {
    let server = Server::start().await;
    acme(&server).await;
    server.create_tenant("globex").await;
    let browser = Browser::start("operator", 1280, 900).await;

    // A wrong token is refused on the page.
    browser.goto(&server.url("/console")).await;
    browser.type_into("#signin-token", "not-a-token").await;
    browser.click("#signin-submit").await;
    browser
        .wait_text("#signin-error", "the refusal", |t| t == "Unknown token.")
        .await;
    browser.screenshot("01-wrong-token").await;

    sign_in(&browser, &server, server.admin(), "").await;
    browser
        .wait_text("#who", "the operator signed in", |t| t == "operator")
        .await;
    let acme_row = browser
        .wait_text("#tenants-table tr[data-tenant=acme]", "acme's usage", |t| {
            t.contains("acme 4")
        })
        .await;
    assert!(acme_row.contains("acme"), "{acme_row}");
    browser
        .wait_for("#tenants-table tr[data-tenant=globex]")
        .await;
    browser.screenshot("02-tenants").await;

    // Plugins of a tenant the operator picks, with their versions and logs.
    browser
        .click("#tenants-table tr[data-tenant=acme] button")
        .await;
    browser
        .wait_text(".card[data-plugin=account]", "the account plugin", |t| {
            t.contains("aggregate") && t.contains("active v1")
        })
        .await;
    browser.click(".card[data-plugin=account] h3 button").await;
    browser
        .wait_text("#logs-name", "the logs' plugin", |t| t == "account")
        .await;
    browser.screenshot("03-plugins").await;

    // The console's own files carry a policy that allows only this server.
    let page = server.get("/console", "").await;
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let (status, body) = body_of(server.get("/console/nothing.js", "").await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
}
