//! The NOC status page in a real headless Chromium, driven over WebDriver (chromedriver): a
//! site whose links all go down — reported through the real probe protocol — shows as down on
//! the page within a few seconds, with its agents in the incident list and the counters; the
//! state and ministry filters narrow the list; the site view opens from the keyboard and shows
//! the open outage. Screenshots are saved to `target/test-artifacts/status-page.png` (page with the
//! incident), `status-page-site.png` (site view) and `status-page-national.png` (14,000 sites).
//!
//! Needs Debian's `chromium` and `chromium-driver`.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rie_common::now_ms;
use rie_e2e::{send_ok, Collector, Guard};
use serde_json::{json, Value};

/// WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session, both ended on drop.
struct Browser {
    base: String,
    session: String,
    _driver: Guard,
    /// Chromium's profile, removed after the session and the driver are gone.
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        for (bin, pkg) in [
            ("chromedriver", "chromium-driver"),
            ("chromium", "chromium"),
        ] {
            let found = Command::new(bin)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "{bin} not found: install it with `apt-get install {pkg}`"
            );
        }
        // chromedriver takes a port number, not a socket: find a free one.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Guard(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let base = format!("http://127.0.0.1:{port}");
        let end = Instant::now() + Duration::from_secs(20);
        while ureq::get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < end, "chromedriver did not start on {base}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-component-update",
                         "--no-first-run", "--window-size=1400,1100",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let v: Value = ureq::post(&format!("{base}/session"))
            .send_json(caps)
            .unwrap_or_else(|e| panic!("WebDriver session refused: {e}"))
            .into_json()
            .unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap().to_string();
        Self {
            base,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let v: Value = ureq::post(&self.url(path))
            .send_json(body)
            .unwrap_or_else(|e| panic!("WebDriver POST {path}: {e}"))
            .into_json()
            .unwrap();
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
    }

    fn find(&self, css: &str) -> String {
        let v = self.post("/element", json!({ "using": "css selector", "value": css }));
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.post(&format!("/element/{e}/click"), json!({}));
    }

    fn keys(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.post(&format!("/element/{e}/value"), json!({ "text": text }));
    }

    /// The text of `css` read in one script, so that a page replaced between finding the
    /// element and reading it (a form's redirect) gives the new page's text, not an error.
    fn text_now(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent.trim() : null;",
            serde_json::to_string(css).unwrap()
        );
        self.js(&script).as_str().unwrap_or_default().to_string()
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        ureq::get(&self.url(&format!("/element/{e}/text")))
            .call()
            .unwrap()
            .into_json::<Value>()
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls `f` until it returns `Some`, for at most `timeout`.
    fn wait<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let end = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, to: &PathBuf) {
        let v: Value = ureq::get(&self.url("/screenshot"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap())
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium through the driver; the driver itself is then killed by its guard.
        let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
    }
}

/// A batch reporting `links` as (id, up, active), all changed at `at_ms`.
fn links(seq: u64, at_ms: i64, links: &[(&str, bool, bool)]) -> Value {
    json!({
        "seq": seq, "created_ms": at_ms,
        "links": links.iter().map(|(l, up, active)| json!({
            "link": l, "up": up, "active": active, "changed_ms": at_ms
        })).collect::<Vec<_>>()
    })
}

/// The incident table as `[site, state text, agents text]` rows.
fn incidents(b: &Browser) -> Vec<(String, String, String)> {
    let v = b.js(
        "return [...document.querySelectorAll('#incidents tbody tr[data-site]')]\
         .map(r => [r.dataset.site, r.cells[1].textContent, r.cells[2].textContent]);",
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |i: usize| r[i].as_str().unwrap().to_string();
            (s(0), s(1), s(2))
        })
        .collect()
}

/// The map's pixel (RGBA) at the centre of site `idx`'s dot.
fn dot(b: &Browser, idx: usize) -> Value {
    b.js(&format!(
        "const [x, y] = inv.xy[{idx}]; \
         return [...document.getElementById('map').getContext('2d')\
           .getImageData(Math.round(x), Math.round(y), 1, 1).data];"
    ))
}

fn counters(b: &Browser) -> Vec<String> {
    (0..6)
        .map(|c| b.text(&format!("#count-{c}")))
        .chain([b.text("#agents-affected")])
        .collect()
}

fn row(site: &str, state: &str, agents: &str) -> (String, String, String) {
    (site.into(), state.into(), agents.into())
}

#[test]
fn a_site_going_down_shows_on_the_status_page() {
    let c = Collector::start();
    let (s1, s3) = (c.probe_config("S1"), c.probe_config("S3"));
    let t0 = now_ms();
    let mut first = links(1, t0, &[("S1-P", true, true), ("S1-B", true, false)]);
    // A check on the primary (12.5 ms, no loss) for the site view's recent RTT and loss.
    first["samples"] = json!([{
        "link": "S1-P", "check": "icmp", "target": "10.255.0.1", "start": t0 / 1000 - 10,
        "interval_s": 10, "sent": 10, "received": 10, "rtt_avg_us": 12_500
    }]);
    // Some traffic this minute, for the site view's table by protocol.
    first["flows"] = json!([
        rie_e2e::flow(t0 / 60_000 * 60, 6, 3, 40, 52_000),
        rie_e2e::flow(t0 / 60_000 * 60, 17, 2, 10, 1_500),
    ]);
    send_ok(&s1, 1, &[first]);
    send_ok(&s3, 1, &[links(1, t0, &[("S3-P", true, true)])]);

    let b = Browser::start();
    b.goto(&c.url("/"));
    assert_eq!(b.js("return document.documentElement.lang;"), "fr");
    // S1 and S3 up, S2 never reported (unknown); no incident.
    b.wait("the page's first poll", Duration::from_secs(10), |b| {
        (b.text("#count-0") == "2").then_some(())
    });
    assert_eq!(counters(&b), ["2", "0", "0", "0", "0", "1", "0"]);
    assert!(incidents(&b).is_empty());
    assert_eq!(b.text("#no-incident"), "Aucun incident pour ces filtres.");

    // Both of S1's links fail: the site is down.
    let down_at = now_ms();
    send_ok(
        &s1,
        1,
        &[links(
            2,
            down_at,
            &[("S1-P", false, false), ("S1-B", false, false)],
        )],
    );
    let sent = Instant::now();
    let rows = b.wait("S1 down on the page", Duration::from_secs(10), |b| {
        let r = incidents(b);
        (!r.is_empty()).then_some(r)
    });
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "S1 took {took:?} to show as down"
    );
    assert_eq!(rows, [row("S1", "Hors service", "420")]);
    assert_eq!(counters(&b), ["1", "0", "0", "1", "0", "1", "420"]);
    assert_eq!(b.text("#incident-count"), "(1)");
    assert_eq!(
        b.js("return document.getElementById('announce').textContent;"),
        "1 incident en cours"
    );
    // The recent RTT and loss of S1's links, as the site view gets them.
    let minute = (t0 / 1000 - 10) / 60 * 60;
    assert_eq!(
        c.get("/api/v1/sites/S1/links/history?minutes=30"),
        json!([{"link": "S1-P", "minute": minute, "bucket_s": 60, "sent": 10, "received": 10,
                "loss_ratio": 0.0, "rtt_avg_ms": 12.5, "rtt_max_ms": null}])
    );
    for (q, code) in [
        ("S9/links/history", 404),
        ("S1/links/history?minutes=0", 400),
    ] {
        match ureq::get(&c.url(&format!("/api/v1/sites/{q}"))).call() {
            Err(ureq::Error::Status(got, _)) => assert_eq!(got, code, "{q}"),
            other => panic!("{q}: {other:?}"),
        }
    }
    // On the map, S1's dot (Rennes) is the "down" red and S3's (Ajaccio) the "up" green.
    assert_eq!(dot(&b, 0), json!([192, 13, 30, 255]));
    assert_eq!(dot(&b, 2), json!([27, 122, 53, 255]));
    // What the page polled: one state digit per site (S1 down, S2 unknown, S3 up) and S1's
    // incident since the time its links failed (probe clock, corrected by its small offset).
    let status = c.get("/api/v1/status");
    assert_eq!(status["states"], "350");
    assert_eq!(status["incidents"].as_array().unwrap().len(), 1);
    assert_eq!(status["incidents"][0][0], 0);
    let since = status["incidents"][0][1].as_i64().unwrap();
    assert!(
        (since - down_at).abs() < 1000,
        "since {since}, down at {down_at}"
    );
    let artefacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    b.screenshot(&artefacts.join("status-page.png"));

    // State filter: "Hors service" keeps S1; "Opérationnel" leaves no incident and S3 on the map.
    b.click("#f-state option[value='3']");
    assert_eq!(incidents(&b), [row("S1", "Hors service", "420")]);
    b.click("#f-state option[value='0']");
    assert!(incidents(&b).is_empty());
    // S1 is filtered off the map: its place shows the white of the mainland outline.
    assert_eq!(dot(&b, 0), json!([255, 255, 255, 255]));
    assert_eq!(dot(&b, 2), json!([27, 122, 53, 255]));
    assert_eq!(b.text("#no-incident"), "Aucun incident pour ces filtres.");
    // Ministry filter (state back to all): Justice has S3 (up) only.
    b.click("#f-state option[value='']");
    let justice = b.js(
        "return [...document.querySelectorAll('#f-ministry option')]\
         .find(o => o.textContent === 'Justice').value;",
    );
    b.click(&format!(
        "#f-ministry option[value='{}']",
        justice.as_str().unwrap()
    ));
    assert!(incidents(&b).is_empty());
    assert_eq!(counters(&b), ["1", "0", "0", "0", "0", "0", "0"]);
    b.click("#f-ministry option[value='']");
    assert_eq!(incidents(&b), [row("S1", "Hors service", "420")]);

    // Keyboard: Enter on the incident opens the site view and moves the focus there.
    b.keys("#incidents tbody button[data-site='S1']", "\u{E007}");
    b.wait("the site view", Duration::from_secs(5), |b| {
        (b.js("return document.getElementById('site-state') !== null;") == json!(true))
            .then_some(())
    });
    assert_eq!(b.js("return document.activeElement.id;"), "site");
    assert_eq!(b.text("#site-state"), "Hors service");
    let episode = b.js(
        "const r = document.querySelector('#site-episodes tbody tr'); \
         return r ? [r.cells[0].textContent, r.cells[2].textContent] : null;",
    );
    assert_eq!(episode, json!(["Coupure", "en cours"]));
    let link_states = b.js(
        "return [...document.querySelectorAll('#site-links tbody tr')]\
         .map(r => [r.cells[0].textContent, r.cells[5].textContent]);",
    );
    assert_eq!(link_states, json!([["S1-P", "coupé"], ["S1-B", "coupé"]]));
    let history = b.js(
        "return [...document.querySelectorAll('#site-history tbody tr')]\
         .map(r => [...r.cells].slice(0, 4).map(c => c.textContent));",
    );
    assert_eq!(history, json!([["S1-P", "12,5 ms", "—", "0,0 %"]]));
    let traffic = b.js(
        "return [...document.querySelectorAll('#site-traffic tbody tr')]\
         .map(r => [...r.cells].map(c => c.textContent));",
    );
    assert_eq!(
        traffic,
        json!([["TCP", "52,0 ko", "40", "3"], ["UDP", "1,5 ko", "10", "2"]])
    );

    // Accessibility basics: every control has a label; state texts pass WCAG AA contrast.
    let unlabelled = b.js("return [...document.querySelectorAll('select, input')]\
         .filter(e => !document.querySelector(`label[for='${e.id}']`)).map(e => e.id);");
    assert_eq!(unlabelled, json!([]));
    let worst = b.js(
        "const lum = c => { const v = c.match(/\\d+/g).slice(0, 3).map(x => { x /= 255; \
           return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; }); \
           return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; }; \
         return Math.min(...[...document.querySelectorAll('.state, #counters .l, td button')]\
           .map(e => 1.05 / (lum(getComputedStyle(e).color) + 0.05)));",
    );
    assert!(worst.as_f64().unwrap() >= 4.5, "contrast {worst}");

    b.screenshot(&artefacts.join("status-page-site.png"));
    // The address names the open site: loading it again reopens the view, with the filters.
    let here = b.js("return location.hash;");
    assert_eq!(here, "#site=S1");
    b.goto("about:blank");
    b.goto(&c.url("/#etat=3&site=S1"));
    b.wait(
        "the site view from the address",
        Duration::from_secs(10),
        |b| {
            (b.js("const e = document.getElementById('site-state'); return e && e.textContent;")
                == json!("Hors service"))
            .then_some(())
        },
    );
    assert_eq!(
        b.js("return document.getElementById('f-state').value;"),
        "3"
    );
    b.wait("the filtered incident list", Duration::from_secs(10), |b| {
        (incidents(b) == [row("S1", "Hors service", "420")]).then_some(())
    });
    // Escape closes the site view and brings the focus back to the incident list.
    b.keys("#site", "\u{E00C}");
    assert_eq!(b.js("return document.getElementById('site').hidden;"), true);
    assert_eq!(b.js("return document.activeElement.id;"), "incidents-title");

    // The fleet section shows no rollout until one starts, then the latest wave by wave.
    assert_eq!(
        b.js("return document.getElementById('rollout').hidden;"),
        true
    );
    let plan = c.dir.path().join("rollout.toml");
    std::fs::write(
        &plan,
        "[primary]\ninterval = \"10s\"\n[[primary.targets]]\nkind = \"tcp\"\ntarget = \"127.0.0.1:80\"\nname = \"web\"\n",
    )
    .unwrap();
    rie_e2e::run_ok(
        Command::new(rie_e2e::bin("rie-collector"))
            .args(["plan", "rollout"])
            .arg(&plan)
            .args(["--canary", "1%", "--canary-site", "S3", "--waves", "100%"])
            .args(c.config_args()),
    );
    b.goto(&c.url("/"));
    b.wait("the rollout section", Duration::from_secs(15), |b| {
        (b.js("return document.getElementById('rollout').hidden;") == json!(false)).then_some(())
    });
    assert_eq!(
        b.text_now("#rollout-summary"),
        "Déploiement n° 1 du plan v1 (national) : en cours, canari. Sites servis : 1 sur 3 ; refus : 0 ; dégradés ou coupés après application : 0."
    );
    // S3's probe is not connected: its plan waits to be sent (pending).
    let waves = b.js(
        "return [...document.querySelectorAll('#rollout-waves tbody tr')]\
         .map(r => [...r.cells].map(c => c.textContent));",
    );
    assert_eq!(
        waves,
        json!([
            ["canari", "1", "0", "1", "0", "0"],
            ["vague 1 (100 %)", "2", "pas encore servie"]
        ])
    );
    println!("screenshots in {}", artefacts.display());
}

/// The national inventory (14,000 generated sites) loads and draws: every site counted, every
/// ministry and département in the filters, the département filter narrowing the counters to
/// exactly that département's sites (counted from the inventory file, independently).
#[test]
fn the_national_inventory_loads_in_the_page() {
    let inv = tempfile::tempdir().unwrap();
    rie_e2e::run_ok(
        Command::new(rie_e2e::bin("rie-collector"))
            .args(["inventory", "generate", "--sites", "14000", "--out"])
            .arg(inv.path()),
    );
    let c = Collector::start_with_inventory(inv.path());
    let b = Browser::start();
    b.goto(&c.url("/"));
    b.wait("14,000 unknown sites", Duration::from_secs(30), |b| {
        (b.text("#count-5") == "14\u{202f}000").then_some(())
    });
    b.screenshot(
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("test-artifacts/status-page-national.png"),
    );
    let sites = c.get("/api/v1/status/sites");
    let n = |k: &str| sites[k].as_array().unwrap().len();
    let options = |id: &str| {
        b.js(&format!(
            "return document.querySelectorAll('#{id} option').length;"
        ))
    };
    assert_eq!(options("f-ministry"), json!(n("ministries") + 1));
    assert_eq!(options("f-departement"), json!(n("departements") + 1));
    // Département 974 (La Réunion), counted from the CSV.
    let csv = std::fs::read_to_string(inv.path().join("sites.csv")).unwrap();
    // Counted from the end of the line: names may hold quoted commas, later columns do not.
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let dep_from_end = header.len() - 1 - header.iter().position(|c| *c == "departement").unwrap();
    let in_974 = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').rev().nth(dep_from_end) == Some("974"))
        .count();
    assert!(in_974 > 0);
    let idx = b.js(
        "return [...document.querySelectorAll('#f-departement option')]\
         .find(o => o.textContent.startsWith('974 ')).value;",
    );
    b.click(&format!(
        "#f-departement option[value='{}']",
        idx.as_str().unwrap()
    ));
    assert_eq!(
        b.text("#count-5").replace('\u{202f}', ""),
        in_974.to_string()
    );
    // Every site of the inventory has a place on the map (mainland, Corsica or an inset)
    // unless it is in an overseas collectivity outside the five départements.
    let unplaced = b.js("return inv.sites.filter((s, i) => !inv.xy[i] && \
           !['975','977','978','986','987','988'].includes(inv.departements[s[3]][0])).length;");
    assert_eq!(unplaced, json!(0));
}

/// One flow aggregate of `bytes` in `direction` ("inbound" / "outbound") in `minute`.
fn directed(minute: i64, protocol: u8, direction: &str, bytes: u64) -> Value {
    json!({
        "minute": minute, "protocol": protocol, "direction": direction,
        "flows": 1, "packets": bytes / 1000, "bytes": bytes
    })
}

/// The rows of one of the traffic tables: `[site, cells' text..., data-bytes of the last cell]`.
fn traffic_rows(b: &Browser, table: &str) -> Value {
    b.js(&format!(
        "return [...document.querySelectorAll('#{table} tbody tr')]\
         .map(r => [r.dataset.site, ...[...r.cells].slice(1).map(c => c.textContent), \
                    r.cells[r.cells.length - 1].dataset.bytes]);"
    ))
}

/// The window's totals as shown: `[in text, in bytes, out text, out bytes, peak text]`.
fn traffic_totals(b: &Browser) -> Value {
    b.js("const t = id => document.getElementById(id); \
          return [t('traffic-total-in').textContent, t('traffic-total-in').dataset.bytes, \
                  t('traffic-total-out').textContent, t('traffic-total-out').dataset.bytes, \
                  t('traffic-peak').textContent];")
}

/// Where the README's images go when asked (`RIE_UPDATE_DOCS_IMG=1`), else the test artefacts.
fn image_path(name: &str) -> PathBuf {
    if std::env::var_os("RIE_UPDATE_DOCS_IMG").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("docs/img")
            .join(name)
    } else {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("test-artifacts")
            .join(name)
    }
}

/// The README shows `docs/img/NAME`: it must be there, a PNG, and small.
fn assert_committed_image(name: &str) {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs/img")
        .join(name);
    let png = std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; make it with `RIE_UPDATE_DOCS_IMG=1 cargo test -p rie-e2e --test status_page_in_browser`",
            p.display()
        )
    });
    assert_eq!(&png[1..4], b"PNG", "{}", p.display());
    assert!(
        png.len() < 400_000,
        "{} is {} bytes",
        p.display(),
        png.len()
    );
}

/// A known load sent through the real probe protocol — S1 (420 agents) 152 kB in and 8 kB out
/// over the last hour, S3 (120 agents) 30 kB out, S2 9 MB in two hours ago — shows exactly on
/// the page: the hour's and the day's totals and peak, the chart's two lines, the top sites by
/// traffic and the sites in incident (S1 down, S3 on backup) by agents, each with its traffic;
/// more traffic arriving shows within the refresh. Saves the README's screenshots of the page
/// and of the finance report (`rie-collector report --format html`) opened in Chromium.
#[test]
fn national_traffic_shows_exactly_on_the_status_page() {
    let c = Collector::start();
    let (s1, s2, s3) = (
        c.probe_config("S1"),
        c.probe_config("S2"),
        c.probe_config("S3"),
    );
    let t0 = now_ms();
    let m0 = t0 / 60_000 * 60;
    let mut b1 = links(1, t0, &[("S1-P", false, false), ("S1-B", false, false)]);
    b1["flows"] = json!([
        directed(m0, 6, "inbound", 52_000),
        directed(m0, 17, "outbound", 8_000),
        directed(m0 - 300, 6, "inbound", 100_000),
    ]);
    send_ok(&s1, 1, &[b1]);
    let mut b3 = links(1, t0, &[("S3-P", false, false), ("S3-B", true, true)]);
    b3["flows"] = json!([directed(m0, 6, "outbound", 30_000)]);
    send_ok(&s3, 1, &[b3]);
    send_ok(
        &s2,
        1,
        &[json!({"seq": 1, "created_ms": t0,
                 "flows": [directed(m0 - 7200, 6, "inbound", 9_000_000)]})],
    );

    // The API first: every bucket of the hour, the stored ones exactly.
    let api = c.get("/api/v1/national/traffic?window=1h");
    assert_eq!(api["bucket_s"], 60);
    let buckets = api["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 60);
    let stored: Vec<&Value> = buckets
        .iter()
        .filter(|b| b["inbound_bytes"] != 0 || b["outbound_bytes"] != 0)
        .collect();
    assert_eq!(
        stored,
        [
            &json!({"start": m0 - 300, "inbound_bytes": 100_000, "outbound_bytes": 0, "unknown_bytes": 0}),
            &json!({"start": m0, "inbound_bytes": 52_000, "outbound_bytes": 38_000, "unknown_bytes": 0}),
        ]
    );
    assert_eq!(
        api["totals"],
        json!({"inbound_bytes": 152_000, "outbound_bytes": 38_000, "unknown_bytes": 0})
    );
    let ranked = |k: &str| {
        api[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["agents"].clone(),
                    s["state"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ranked("top_sites_by_traffic"),
        [
            ("S1".into(), json!(420), json!("down")),
            ("S3".into(), json!(120), json!("on_backup"))
        ]
    );
    assert_eq!(
        ranked("top_sites_by_agents_affected"),
        [
            ("S1".into(), json!(420), json!("down")),
            ("S3".into(), json!(120), json!("on_backup"))
        ]
    );
    assert_eq!(
        (api["agents_affected"].clone(), api["incidents"].clone()),
        (json!(540), json!(2))
    );
    let day = c.get("/api/v1/national/traffic?window=1d&limit=1");
    assert_eq!(
        (
            day["bucket_s"].clone(),
            day["buckets"].as_array().unwrap().len()
        ),
        (json!(900), 96)
    );
    assert_eq!(day["totals"]["inbound_bytes"], 9_152_000);
    assert_eq!(day["top_sites_by_traffic"][0]["id"], "S2");
    assert_eq!(day["top_sites_by_traffic"].as_array().unwrap().len(), 1);
    for q in ["window=2h", "limit=0", "limit=101"] {
        match ureq::get(&c.url(&format!("/api/v1/national/traffic?{q}"))).call() {
            Err(ureq::Error::Status(got, _)) => assert_eq!(got, 400, "{q}"),
            other => panic!("{q}: {other:?}"),
        }
    }

    let b = Browser::start();
    b.post("/window/rect", json!({"width": 1400, "height": 1500}));
    b.goto(&c.url("/"));
    b.wait("the hour's traffic", Duration::from_secs(15), |b| {
        (b.text("#traffic-total-in") != "–").then_some(())
    });
    // Peak: S1's 100,000 B in one minute = 13,333 bit/s.
    assert_eq!(
        traffic_totals(&b),
        json!(["152,0 ko", "152000", "38,0 ko", "38000", "13,3 kbit/s"])
    );
    assert_eq!(
        traffic_rows(&b, "top-traffic"),
        json!([
            ["S1", "152,0 ko", "8,0 ko", "160,0 ko", "160000"],
            ["S3", "0 o", "30,0 ko", "30,0 ko", "30000"]
        ])
    );
    assert_eq!(
        traffic_rows(&b, "top-affected"),
        json!([
            ["S1", "Hors service", "420", "160,0 ko", "160000"],
            ["S3", "Sur secours", "120", "30,0 ko", "30000"]
        ])
    );
    assert_eq!(
        b.text("#traffic-affected"),
        "540 agents sur 2 sites en incident"
    );
    // The chart: 60 buckets, one line per direction (no unknown traffic), the inbound line
    // touching the top of the plot (y = 12) at its peak and the outbound one not.
    let chart = b.js(
        "const c = document.getElementById('traffic-chart'); \
         const top = s => Math.min(...c.querySelector(`polyline[data-series=${s}]`)\
           .getAttribute('points').split(' ').map(p => +p.split(',')[1])); \
         return [c.dataset.buckets, c.querySelectorAll('polyline').length, \
                 c.querySelector('polyline[data-series=in]').getAttribute('points').split(' ').length, \
                 top('in'), top('out') > 12];",
    );
    assert_eq!(chart, json!(["60", 2, 60, 12, true]));
    assert_eq!(
        b.js("return document.getElementById('traffic-chart').getAttribute('aria-label');"),
        "Trafic national de la dernière heure : entrant 152,0 ko, sortant 38,0 ko ; pic 13,3 kbit/s."
    );
    b.screenshot(&image_path("status-page.png"));

    // The day: S2's 9 MB two hours ago leads; its quarter-hour is the peak (9e6 × 8 / 900 s).
    b.click("#tw-1d");
    b.wait("the day's traffic", Duration::from_secs(15), |b| {
        (b.text("#traffic-total-in") == "9,2 Mo").then_some(())
    });
    assert_eq!(
        traffic_totals(&b),
        json!(["9,2 Mo", "9152000", "38,0 ko", "38000", "80,0 kbit/s"])
    );
    assert_eq!(
        b.js(
            "return [document.getElementById('tw-1d').getAttribute('aria-pressed'), \
                     document.getElementById('traffic-chart').dataset.buckets];"
        ),
        json!(["true", "96"])
    );
    let first = traffic_rows(&b, "top-traffic");
    assert_eq!(
        first[0],
        json!(["S2", "9,0 Mo", "0 o", "9,0 Mo", "9000000"])
    );
    assert_eq!(first.as_array().unwrap().len(), 3);

    // Live: 500 kB more into S3 this minute shows without a reload (the store part is reused
    // for at most 10 s, the page asks every 10 s) and moves S3 to the top of the hour.
    b.click("#tw-1h");
    let mut more = links(2, now_ms(), &[("S3-P", false, false), ("S3-B", true, true)]);
    more["flows"] = json!([directed(now_ms() / 60_000 * 60, 6, "inbound", 500_000)]);
    send_ok(&s3, 1, &[more]);
    b.wait("S3's new traffic", Duration::from_secs(30), |b| {
        (b.text("#traffic-total-in") == "652,0 ko").then_some(())
    });
    let rows = traffic_rows(&b, "top-traffic");
    assert_eq!(
        rows[0],
        json!(["S3", "500,0 ko", "30,0 ko", "530,0 ko", "530000"])
    );
    assert_eq!(
        rows[1],
        json!(["S1", "152,0 ko", "8,0 ko", "160,0 ko", "160000"])
    );
    // A top site's button opens its site view.
    b.click("#top-traffic button[data-site='S3']");
    b.wait("S3's site view", Duration::from_secs(5), |b| {
        (b.js("const e = document.getElementById('site-state'); return e && e.textContent;")
            == json!("Sur secours"))
        .then_some(())
    });

    assert_committed_image("status-page.png");
}

/// The finance report (`rie-collector report --format html`) of the hand-made inventory of
/// `tests/indicators_by_hand.rs` (same traffic, so the same national total, 5,590.83 € for
/// October 2026) opened in Chromium: French, its figures and charts drawn with nothing
/// fetched; saved as the README's screenshot.
#[test]
fn the_finance_report_renders_in_the_browser() {
    let c = Collector::start_with_inventory(&rie_e2e::fixture("indicators"));
    // 2026-10-02, -04, -06 00:00 UTC: A 3e6 B, B 1e6 B, C 5e6 B; A fails over 2 h on the 5th,
    // D is down 6 h on the 15th.
    let oct1 = 1_790_812_800_i64;
    let day = 86_400;
    let mut sql = String::new();
    for (d, site, bytes) in [
        (1, "A", 3_000_000),
        (3, "B", 1_000_000),
        (5, "C", 5_000_000),
    ] {
        sql += &format!(
            "INSERT INTO flow_minute(minute, site_id, exporter, protocol, direction, flows, packets, bytes) \
             VALUES ({}, '{site}', '', 6, 1, 1, 1, {bytes});",
            oct1 + d * day
        );
    }
    for (site, kind, from_s, hours) in [
        ("A", "failover", oct1 + 4 * day + 36_000, 2),
        ("D", "outage", oct1 + 14 * day, 6),
    ] {
        sql += &format!(
            "INSERT INTO episodes(site_id, kind, start_ms, end_ms) VALUES ('{site}', '{kind}', {}, {});",
            from_s * 1000,
            (from_s + hours * 3600) * 1000
        );
    }
    c.sql(&sql);
    let html = c.dir.path().join("rapport.html");
    rie_e2e::run_ok(
        Command::new(rie_e2e::bin("rie-collector"))
            .arg("report")
            .args(c.config_args())
            .arg("--costs")
            .arg(rie_e2e::fixture("indicators/costs.toml"))
            .args([
                "--period", "2026-10", "--by", "ministry", "--format", "html", "--out",
            ])
            .arg(&html),
    );
    let b = Browser::start();
    b.post("/window/rect", json!({"width": 1400, "height": 1300}));
    b.goto(&format!("file://{}", html.display()));
    assert_eq!(b.js("return document.documentElement.lang;"), "fr");
    // The national total, to the cent (narrow no-break spaces between thousands).
    let text = b.js("return document.body.innerText;");
    let text = text.as_str().unwrap().replace(['\u{202f}', '\u{a0}'], " ");
    assert!(text.contains("5 590,83 €"), "{text}");
    assert_eq!(
        b.js("return [...document.querySelectorAll('script, link, img')].length;"),
        json!(0)
    );
    b.screenshot(&image_path("finance-report.png"));
    assert_committed_image("finance-report.png");
}

/// With authentication required (`[auth] required = true`), the page opened without
/// credentials says that a login is needed and shows no data; opened from a login link
/// (`/#token=…`, as the demo prints), it loads under the page's strict content policy, the
/// token leaves the address bar at once, and the tab keeps working after a reload.
#[test]
fn the_page_asks_for_a_login_and_a_login_link_opens_it() {
    let c = Collector::start_with_config("[auth]\nrequired = true\n");
    let token = c.create_token("noc", "browser");
    let b = Browser::start();
    b.goto(&c.url("/"));
    let msg = b.wait("the login notice", Duration::from_secs(10), |b| {
        let t = b.js(
            "return document.getElementById('login').hidden ? null : document.getElementById('login-why').textContent;",
        );
        t.as_str().map(String::from)
    });
    assert_eq!(msg, "Connexion requise.");
    // No identity provider here: the local account's form only.
    assert_eq!(
        b.js("return [document.getElementById('login-sso').hidden, document.getElementById('login-local').getAttribute('action')];"),
        json!([true, "/auth/local"])
    );
    assert_eq!(b.text("#count-0"), "–", "no data without a login");

    b.goto(&c.url(&format!("/#token={token}")));
    b.wait("the 3 sites of the fixture", Duration::from_secs(10), |b| {
        (b.text("#count-5") == "3").then_some(())
    });
    assert_eq!(b.js("return location.hash;"), json!(""));
    b.wait("who is reading", Duration::from_secs(5), |b| {
        let t = b.js(
            "const e = document.getElementById('whoami'); return e.hidden ? null : e.textContent;",
        );
        (t == json!("Connecté : browser (noc) ")).then_some(())
    });
    assert_eq!(
        b.js("return document.getElementById('login').hidden;"),
        json!(true)
    );
    // A reload of the same tab keeps the token (sessionStorage), still out of the URL.
    b.goto(&c.url("/"));
    b.wait("the sites after a reload", Duration::from_secs(10), |b| {
        (b.text("#count-5") == "3").then_some(())
    });
    assert_eq!(
        b.js("return document.getElementById('login').hidden;"),
        json!(true)
    );
    // A ministry's link: the page shows that ministry's site only (S1, Intérieur).
    let ministry = c.create_token("ministry:Intérieur", "browser-interieur");
    b.js("sessionStorage.clear(); return null;");
    b.goto(&c.url(&format!("/#token={ministry}")));
    b.wait("the ministry's one site", Duration::from_secs(10), |b| {
        (b.text("#count-5") == "1").then_some(())
    });
    assert_eq!(b.js("return inv.sites.map(s => s[0]);"), json!(["S1"]));
}

/// A local account (`account create`) logs in with the page's form: a wrong password brings
/// the page back saying so, with no data; the right one opens a session (cookie) and the
/// page loads the account's scope (a ministry: its one site), says who is connected, and
/// logs out.
#[test]
fn a_local_account_logs_in_with_the_page_form() {
    let c = Collector::start_with_config("[auth]\nrequired = true\n");
    let password = c.create_account("corr.interieur", "ministry:Intérieur");
    let b = Browser::start();
    let login = |b: &Browser, name: &str, password: &str| {
        b.goto(&c.url("/"));
        b.wait("the login form", Duration::from_secs(10), |b| {
            (b.js("return document.getElementById('login').hidden;") == json!(false)).then_some(())
        });
        b.keys("#l-name", name);
        b.keys("#l-password", password);
        b.click("#login-local button");
    };
    login(&b, "corr.interieur", "not the password");
    // The page before the form's answer already says "Connexion requise.": wait for the
    // page the refusal redirects to, which says why.
    let msg = b.wait("the refusal", Duration::from_secs(10), |b| {
        let t = b.js("const e = document.getElementById('login-why'); return document.getElementById('login').hidden ? null : e.textContent;");
        t.as_str().filter(|t| t.contains(" : ")).map(String::from)
    });
    assert_eq!(
        msg,
        "Connexion requise : Identifiant ou mot de passe incorrect."
    );
    assert_eq!(b.js("return location.hash;"), json!(""));
    assert_eq!(b.text_now("#count-0"), "–", "no data without a login");

    login(&b, "corr.interieur", &password);
    b.wait("the ministry's one site", Duration::from_secs(10), |b| {
        (b.text_now("#count-5") == "1").then_some(())
    });
    assert_eq!(b.js("return inv.sites.map(s => s[0]);"), json!(["S1"]));
    b.wait("who is reading", Duration::from_secs(5), |b| {
        let t = b.js(
            "const e = document.getElementById('whoami'); return e.hidden ? null : e.textContent;",
        );
        (t == json!("Connecté : corr.interieur (ministry:Intérieur) se déconnecter")).then_some(())
    });
    // The fleet section counts the ministry's one site, whose probe never connected.
    b.wait("the fleet section", Duration::from_secs(10), |b| {
        (b.text_now("#fleet-summary")
            == "1 site ; 0 sonde rend compte de son état ; 0 avec des lots en attente (0 lot), dont 0 en hausse.")
            .then_some(())
    });
    assert_eq!(
        b.js(
            "return [...document.querySelectorAll('#fleet-versions td')].map(t => t.textContent);"
        ),
        json!(["jamais connectée", "1", "protocole : inconnu", "1"])
    );
    b.click("#whoami a");
    b.wait(
        "the login form after logout",
        Duration::from_secs(10),
        |b| (b.js("return document.getElementById('login').hidden;") == json!(false)).then_some(()),
    );
    assert_eq!(b.text_now("#count-0"), "–");
}
