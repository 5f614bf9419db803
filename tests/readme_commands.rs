//! The README matches the code.
//!
//! - Every command of its fenced `sh` blocks is either run here — the collector and probe
//!   walkthrough, in order, with `/etc` and `/var/lib` moved into a temporary directory: `pki
//!   init`, `inventory check`, `serve` on `configs/collector.example.toml` as written (ports
//!   aside), `probe-config`, then `rie-probe run` on that file until the collector sees the
//!   site connected — or listed in [`ELSEWHERE`] with the file that runs it, which must contain
//!   it. A new README command that is in neither fails this test, and so does a stale entry.
//! - Every `rie-collector`, `rie-probe` and `rie-sim` command quoted inline names real
//!   subcommands and real flags (their `--help`).
//! - Every `rie_collector_*` metric it lists is registered in `collector/src/metrics.rs`.
//! - Its configuration table and `configs/collector.example.toml` name the same keys.
//! - Every file it links or names exists, images included, and every package `.ci/run`
//!   installs is in its list of test peers.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rie_e2e::{bin, free_ports, run_ok};

/// README commands run by another test or script: (command, file that runs it, what that file
/// must contain).
const ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "cargo run --release -p rie-sim -- demo",
        "tests/demo_shows_data.rs",
        "\"demo\"",
    ),
    ("scripts/test.sh", ".ci/run", "scripts/test.sh"),
    // The clean-clone CI procedure: the commands that run `.ci/run` itself on a fresh clone
    // (what CI does); no test runs them, they run every test. `.ci/run` must be the script
    // that runs the README's test command.
    (
        "git clone --no-local . /tmp/rie-ci && cd /tmp/rie-ci",
        ".ci/run",
        "scripts/test.sh",
    ),
    (
        "export CARGO_HOME=$(mktemp -d) CARGO_TARGET_DIR=$(mktemp -d)",
        ".ci/run",
        "scripts/test.sh",
    ),
    ("CI=true bash .ci/run", ".ci/run", "scripts/test.sh"),
    (
        "rie-collector plan check configs/plans/national.example.toml",
        "tests/plans_reach_the_fleet.rs",
        "configs/plans/national.example.toml",
    ),
    (
        "rie-collector plan add --config /etc/rie-collector/collector.toml configs/plans/national.example.toml --scope national",
        "tests/plans_reach_the_fleet.rs",
        "\"plan\", \"add\"",
    ),
    (
        "rie-collector plan rollout --config /etc/rie-collector/collector.toml new-plan.toml --canary 1% --waves 10%,50%,100% --wave-interval 10m",
        "tests/plan_rollout.rs",
        "\"plan\", \"rollout\"",
    ),
    (
        "rie-collector plan rollback --config /etc/rie-collector/collector.toml",
        "tests/plan_rollout.rs",
        "\"plan\", \"rollback\"",
    ),
    (
        "RIE_UPDATE_DOCS_IMG=1 cargo test -p rie-e2e --test status_page_in_browser",
        "tests/status_page_in_browser.rs",
        "RIE_UPDATE_DOCS_IMG",
    ),
];

/// README commands this test runs (the walkthrough of [`the_collector_and_probe_walkthrough_runs`]).
const HERE: &[&str] = &[
    "rie-collector pki init --dir /etc/rie-collector/pki --name collector.rie.example",
    "rie-collector inventory check --dir /etc/rie-collector/inventory",
    "rie-collector serve --config /etc/rie-collector/collector.toml",
    "rie-collector probe-config --config /etc/rie-collector/collector.toml --site S00042 --out probe-S00042.toml",
    "rie-probe run --config /etc/rie-probe/probe.toml",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The lines of the README's fenced `sh` blocks (comments and blank lines left out).
fn fenced_commands(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in md.lines() {
        let t = line.trim();
        if let Some(lang) = t.strip_prefix("```") {
            inside = !inside && matches!(lang, "sh" | "bash" | "shell" | "console");
            continue;
        }
        if inside && !t.is_empty() && !t.starts_with('#') {
            out.push(t.to_string());
        }
    }
    out
}

/// Inline code spans (`like this`, possibly across a line break) outside fenced blocks.
fn inline_spans(md: &str) -> Vec<String> {
    let mut text = String::new();
    let mut fenced = false;
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            text += line;
            text += "\n";
        }
    }
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn every_fenced_command_is_run_here_or_by_a_named_test() {
    let md = readme();
    let commands = fenced_commands(&md);
    assert!(
        commands.len() >= HERE.len() + ELSEWHERE.len(),
        "found only {commands:?}"
    );
    for c in &commands {
        let here = HERE.contains(&c.as_str());
        let elsewhere = ELSEWHERE.iter().find(|(cmd, _, _)| cmd == c);
        match (here, elsewhere) {
            (true, None) => {}
            (false, Some((_, file, needle))) => {
                let text = std::fs::read_to_string(root().join(file))
                    .unwrap_or_else(|e| panic!("{file} (said to run `{c}`): {e}"));
                assert!(
                    text.contains(needle),
                    "{file} is said to run `{c}` but does not contain {needle:?}"
                );
            }
            (false, None) => panic!(
                "README command `{c}` is run by no test: run it in tests/readme_commands.rs (HERE) \
                 or name the test or script that runs it (ELSEWHERE)"
            ),
            (true, Some(_)) => panic!("`{c}` is in both HERE and ELSEWHERE"),
        }
    }
    for c in HERE.iter().chain(ELSEWHERE.iter().map(|(c, _, _)| c)) {
        assert!(
            commands.iter().any(|x| x == c),
            "`{c}` is no longer in the README: remove it from tests/readme_commands.rs"
        );
    }
}

/// A README path moved under `tmp` (`/etc/x` → `tmp/etc/x`, `/var/lib/x` → `tmp/var/lib/x`).
fn moved(tmp: &Path, text: &str) -> String {
    let t = tmp.display();
    text.replace("/etc/", &format!("{t}/etc/"))
        .replace("/var/lib/", &format!("{t}/var/lib/"))
}

/// The README command `line` as a process: its binary from the build, paths moved.
fn command(tmp: &Path, line: &str, cwd: &Path) -> Command {
    let line = moved(tmp, line);
    let mut words = line.split_whitespace();
    let mut c = Command::new(bin(words.next().unwrap()));
    c.args(words).current_dir(cwd);
    c
}

fn terminate(mut child: Child, what: &str) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{what} exited with {st} after SIGTERM");
            return;
        }
        assert!(Instant::now() < end, "{what} did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The README's "Collector" and "Enrolling and running a probe" sections, command by command:
/// the example config as written serves; the probe config it issues connects a real probe.
#[test]
fn the_collector_and_probe_walkthrough_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let line = |i: usize| HERE[i];
    // pki init
    run_ok(&mut command(t, line(0), t));
    assert!(t.join("etc/rie-collector/pki/ca.pem").exists());
    // An inventory to check: the synthetic national one, 300 sites (docs/inventory.md).
    let inv = t.join("etc/rie-collector/inventory");
    run_ok(
        Command::new(bin("rie-collector"))
            .args(["inventory", "generate", "--sites", "300", "--out"])
            .arg(&inv),
    );
    let out = run_ok(&mut command(t, line(1), t));
    assert!(out.contains("300"), "inventory check said: {out}");
    // The example config, paths moved and ports free, as /etc/rie-collector/collector.toml.
    let [probe, api] = free_ports::<2>();
    let example = std::fs::read_to_string(root().join("configs/collector.example.toml")).unwrap();
    assert!(
        example.contains("listen = \"0.0.0.0:7443\"")
            && example.contains("listen = \"127.0.0.1:8480\"")
    );
    let config = moved(t, &example)
        .replace(
            "listen = \"0.0.0.0:7443\"",
            &format!("listen = \"{probe}\""),
        )
        .replace(
            "listen = \"127.0.0.1:8480\"",
            &format!("listen = \"{api}\""),
        )
        .replace(
            "public_address = \"collector.rie.example:7443\"",
            &format!("public_address = \"localhost:{}\"", probe.port()),
        );
    std::fs::write(t.join("etc/rie-collector/collector.toml"), config).unwrap();
    // (`pki init` makes the certificate valid for localhost too: the probe dials that here.)
    std::fs::create_dir_all(t.join("var/lib/rie-collector")).unwrap();
    let log = std::fs::File::create(t.join("collector.log")).unwrap();
    let collector = command(t, line(2), t)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let health = format!("http://{api}/healthz");
    let end = Instant::now() + Duration::from_secs(30);
    while ureq::get(&health).call().is_err() {
        assert!(
            Instant::now() < end,
            "serve did not answer on {health}:\n{}",
            std::fs::read_to_string(t.join("collector.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // probe-config, then the file copied to the router as /etc/rie-probe/probe.toml.
    run_ok(&mut command(t, line(3), t));
    let issued = std::fs::read_to_string(t.join("probe-S00042.toml")).unwrap();
    std::fs::create_dir_all(t.join("etc/rie-probe")).unwrap();
    std::fs::write(t.join("etc/rie-probe/probe.toml"), moved(t, &issued)).unwrap();
    let log = std::fs::File::create(t.join("probe.log")).unwrap();
    let probe = command(t, line(4), t)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let site = format!("http://{api}/api/v1/sites/S00042");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let v: serde_json::Value = ureq::get(&site).call().unwrap().into_json().unwrap();
        if v["connected"] == true {
            break;
        }
        assert!(
            Instant::now() < end,
            "S00042 never connected: {v}\nprobe log:\n{}",
            std::fs::read_to_string(t.join("probe.log")).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(probe, "rie-probe run");
    terminate(collector, "rie-collector serve");
}

/// `rie-x sub sub --help`, cached.
struct Help(BTreeMap<Vec<String>, String>);

impl Help {
    fn get(&mut self, words: &[String]) -> &str {
        self.0.entry(words.to_vec()).or_insert_with(|| {
            let out = Command::new(bin(&words[0]))
                .args(&words[1..])
                .arg("--help")
                .output()
                .unwrap();
            assert!(out.status.success(), "{words:?} --help failed");
            String::from_utf8(out.stdout).unwrap()
        })
    }

    /// The subcommands a help text lists.
    fn commands(text: &str) -> BTreeSet<String> {
        text.lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }
}

#[test]
fn inline_commands_name_real_subcommands_and_flags() {
    let mut help = Help(BTreeMap::new());
    let mut checked = 0;
    for span in inline_spans(&readme()) {
        let mut words = span.split_whitespace();
        let Some(first) = words.next() else { continue };
        if !["rie-collector", "rie-probe", "rie-sim"].contains(&first) {
            continue;
        }
        let mut path = vec![first.to_string()];
        let rest: Vec<&str> = words.collect();
        if rest.is_empty() {
            // The program's name alone (`rie-probe` runs on each site router).
            continue;
        }
        let mut i = 0;
        while i < rest.len() {
            let subs = Help::commands(help.get(&path));
            if subs.contains(rest[i]) {
                path.push(rest[i].to_string());
                i += 1;
            } else {
                break;
            }
        }
        let text = help.get(&path).to_string();
        for w in &rest[i..] {
            for flag in w
                .trim_matches(|c| c == '[' || c == ']')
                .split(['|', '='])
                .filter(|f| f.starts_with("--"))
            {
                assert!(
                    text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                    "README `{span}`: `{}` has no flag {flag}",
                    path.join(" ")
                );
            }
        }
        assert!(
            path.len() > 1,
            "README `{span}`: {first} has no such subcommand"
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} inline commands found");
}

#[test]
fn listed_metrics_are_registered() {
    let md = readme();
    // Metrics are declared next to the code they measure: any source file of the collector.
    fn sources(dir: &std::path::Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut src = String::new();
    sources(&root().join("collector/src"), &mut src);
    let mut names = BTreeSet::new();
    for (i, _) in md.match_indices("rie_collector_") {
        let name: String = md[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
            .collect();
        names.insert(name);
    }
    assert!(names.len() >= 10, "{names:?}");
    for n in &names {
        assert!(
            src.contains(&format!("\"{n}\"")),
            "README lists {n}, which no file of collector/src registers"
        );
    }
}

/// Keys of a TOML file, commented-out ones (`# key = ...` and `# [table]`) included, as
/// dotted paths.
fn example_keys(toml: &str) -> BTreeSet<String> {
    let mut table = String::new();
    let mut out = BTreeSet::new();
    for line in toml.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some(t) = l.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            if !t.contains(' ') {
                table = t.to_string();
            }
            continue;
        }
        let Some((key, _)) = l.split_once(" = ") else {
            continue;
        };
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            out.insert(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    out
}

/// Keys of the README's configuration table (`a.b` / `c` means `a.b` and `a.c`).
fn table_keys(md: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in md.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        let keys: Vec<&str> = first.split('`').skip(1).step_by(2).collect();
        let prefix = keys[0].rsplit_once('.').map_or("", |(p, _)| p);
        out.insert(keys[0].to_string());
        for k in &keys[1..] {
            out.insert(format!("{prefix}.{k}"));
        }
    }
    out
}

#[test]
fn the_config_table_and_the_example_name_the_same_keys() {
    let example = example_keys(
        &std::fs::read_to_string(root().join("configs/collector.example.toml")).unwrap(),
    );
    let table = table_keys(&readme());
    assert!(table.len() >= 20, "{table:?}");
    // The InfluxDB sink's keys are documented in configs/collector.influx.example.toml and
    // docs/schema.md, which the README points to.
    let example: BTreeSet<String> = example
        .into_iter()
        .filter(|k| !k.starts_with("influx."))
        .collect();
    let missing: Vec<_> = example.difference(&table).collect();
    let unknown: Vec<_> = table.difference(&example).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "configs/collector.example.toml keys missing from the README table: {missing:?}; \
         README table keys not in the example: {unknown:?}"
    );
}

#[test]
fn named_files_exist_and_ci_packages_are_listed() {
    let md = readme();
    let mut paths = BTreeSet::new();
    // Markdown links and images: ](path)
    for (i, _) in md.match_indices("](") {
        let p: String = md[i + 2..].chars().take_while(|c| *c != ')').collect();
        if !p.starts_with("http") && !p.starts_with('#') {
            paths.insert(p);
        }
    }
    for span in inline_spans(&md) {
        let roots = [
            "docs/",
            "configs/",
            "scripts/",
            "tests/",
            "dashboards/",
            ".ci/",
            "deploy/",
        ];
        if roots.iter().any(|r| span.starts_with(r)) && !span.contains(' ') {
            paths.insert(span);
        }
    }
    assert!(paths.len() >= 20, "{paths:?}");
    for p in &paths {
        assert!(
            root().join(p).exists(),
            "README names {p}, which does not exist"
        );
    }
    for img in ["docs/img/status-page.png", "docs/img/finance-report.png"] {
        assert!(paths.contains(img), "README does not show {img}");
    }
    // Every package .ci/run installs is named in the README's list of test peers.
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let mut pkgs = BTreeSet::new();
    for w in ci.split_whitespace() {
        if let Some((_, pkg)) = w.split_once(':') {
            if !pkg.is_empty() && pkg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                pkgs.insert(pkg.to_string());
            }
        }
        if let Some(p) = w
            .strip_prefix("need_pkgs+=(")
            .and_then(|p| p.strip_suffix(')'))
        {
            if !p.starts_with('"') {
                pkgs.insert(p.to_string());
            }
        }
    }
    assert!(pkgs.len() >= 15, "{pkgs:?}");
    for p in &pkgs {
        assert!(
            md.contains(p.as_str()),
            "`.ci/run` installs {p}, which the README's list of test peers does not name"
        );
    }
}
