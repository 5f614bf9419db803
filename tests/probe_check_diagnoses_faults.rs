//! `rie-probe check` against a real collector: all green on a good install, and for each fault
//! induced (wrong token, collector down, foreign CA, unusable spool directory, world-readable
//! secret, one of two listed collectors down) the right line turns ✘ with its fix, and the exit
//! code says whether it blocks.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rie_e2e::{bin, free_ports, run_ok, Collector};

fn check(config: &Path, lang: &str) -> (i32, String) {
    let out = Command::new(bin("rie-probe"))
        .args(["check", "--lang", lang, "--config"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn edited(config: &Path, name: &str, f: impl Fn(String) -> String) -> std::path::PathBuf {
    let p = config.with_file_name(name);
    std::fs::write(&p, f(std::fs::read_to_string(config).unwrap())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

#[test]
fn check_passes_on_a_good_install_and_names_each_fault() {
    let mut c = Collector::start();
    let good = c.probe_config("S1");
    let data = c.dir.path().join("probe-data");
    let good = edited(&good, "good.toml", |t| {
        t.replace("/var/lib/rie-probe", data.to_str().unwrap())
    });

    let (code, out) = check(&good, "fr");
    assert_eq!(code, 0, "{out}");
    for item in [
        "Configuration",
        "Spool",
        "DNS",
        "Collecteur joignable",
        "Certificat TLS",
        "Jeton",
        "Horloge",
    ] {
        assert!(out.contains(&format!("✔ {item}")), "{item} not ✔:\n{out}");
    }
    assert!(out.contains("La sonde peut fonctionner."), "{out}");

    // A wrong token blocks, and says where to get a new one.
    let wrong = edited(&good, "wrong.toml", |t| {
        let line = t
            .lines()
            .find(|l| l.starts_with("token = "))
            .unwrap()
            .to_string();
        t.replace(&line, "token = \"feedfacefeedface\"")
    });
    let (code, out) = check(&wrong, "en");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✘ Token") && out.contains("rie-collector probe-config"),
        "{out}"
    );
    assert!(out.contains("✔ TLS certificate"), "{out}");

    // A CA that did not sign the collector's certificate.
    let other = tempfile::tempdir().unwrap();
    run_ok(
        Command::new(bin("rie-collector"))
            .args(["pki", "init", "--dir"])
            .arg(other.path()),
    );
    let foreign = edited(&good, "foreign.toml", |t| {
        let start = t.find("ca_cert = '''").unwrap();
        format!(
            "{}ca_cert_file = \"{}\"\n",
            &t[..start],
            other.path().join("ca.pem").display()
        )
    });
    let (code, out) = check(&foreign, "en");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✘ TLS certificate") && out.contains("✔ Collector reachable"),
        "{out}"
    );

    // A spool directory that cannot exist (under a regular file).
    let blocker = c.dir.path().join("a-file");
    std::fs::write(&blocker, "x").unwrap();
    let nospool = edited(&good, "nospool.toml", |t| {
        t.replace(data.to_str().unwrap(), blocker.to_str().unwrap())
    });
    let (code, out) = check(&nospool, "fr");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✘ Spool") && out.contains("chown rie-probe"),
        "{out}"
    );

    // A token readable by everyone: flagged, but the probe can still work.
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out) = check(&good, "fr");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("✘ Droits du fichier secret") && out.contains("chmod 600"),
        "{out}"
    );
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Two collectors listed, one not answering: each is checked, the one down is a warning
    // (the probe uses the other), and a summary line says which are reachable.
    let [dead] = free_ports::<1>();
    let live = c.probe_addr.to_string();
    let two = edited(&good, "two.toml", |t| {
        t.replace(
            &format!("address = \"{live}\""),
            &format!("addresses = [\"{dead}\", \"{live}\"]"),
        )
    });
    let (code, out) = check(&two, "en");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("✘ Collector reachable [{dead}]")),
        "{out}"
    );
    assert!(
        out.contains(&format!("✔ Collector reachable [{live}]")),
        "{out}"
    );
    assert!(out.contains(&format!("✔ Token [{live}]")), "{out}");
    assert!(
        out.contains(&format!(
            "✘ Collectors reachable — 1/2 : {dead} ✘, {live} ✔"
        )) && out.contains("the probe uses the others meanwhile"),
        "{out}"
    );

    // The collector is down.
    c.kill9();
    let (code, out) = check(&good, "en");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✘ Collector reachable") && out.contains("firewall"),
        "{out}"
    );
    // Both listed collectors down: that blocks.
    let (code, out) = check(&two, "en");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✘ Collectors reachable — 0/2")
            && out.contains("no collector accepts the probe"),
        "{out}"
    );

    // A capture interface that does not exist blocks, and says where to look.
    let noiface = edited(&good, "noiface.toml", |t| {
        format!("{t}\n[capture]\ninterfaces = [\"eth-nope9\"]\n")
    });
    let (code, out) = check(&noiface, "fr");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✘ Interface de capture — eth-nope9 : absente") && out.contains("ip link"),
        "{out}"
    );
    let lo = edited(&good, "lo.toml", |t| {
        format!("{t}\n[capture]\ninterfaces = [\"lo\"]\n")
    });
    let (_, out) = check(&lo, "en");
    assert!(out.contains("✔ Capture interface — lo : present"), "{out}");

    // A config with an unknown key: the key is named.
    let typo = edited(&good, "typo.toml", |t| {
        t.replace("batch_interval", "batch_intervall")
    });
    let (code, out) = check(&typo, "en");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("✘ Configuration") && out.contains("batch_intervall"),
        "{out}"
    );
}
