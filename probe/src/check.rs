//! `rie-probe check`: the technician's checklist at install time. Each line says ✔ or ✘, what
//! was found and, when it fails, the one thing to do. Blocking failures (the probe cannot work)
//! make the exit code 1; warnings do not.
//!
//! Checked: configuration, secret-file permissions, spool directory (writable, free space),
//! capture interfaces present, capture permission, NetFlow datagrams arriving on the configured
//! port (when the relay is enabled), each link reaching the core (one attempt of each configured
//! check over the link), and for each configured collector: DNS, reachable, TLS certificate
//! against the configured CA, token accepted, clock offset (with several collectors, one that
//! fails is a warning as long as another accepts the probe, and a summary line lists them).

use std::path::Path;
use std::time::Instant;

use crate::config::{world_or_group_readable, ProbeConfig};
use crate::session::{Session, SessionError};
use crate::status::Lang;
use crate::uplink::Identity;
use rie_common::now_ms;

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub ok: bool,
    /// A failed blocking check makes `check` exit non-zero.
    pub blocking: bool,
    pub label: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl Line {
    pub fn render(&self) -> String {
        let mark = if self.ok { "✔" } else { "✘" };
        let mut s = format!("{mark} {} — {}", self.label, self.detail);
        if let (false, Some(fix)) = (self.ok, &self.fix) {
            s.push_str(&format!("\n    → {fix}"));
        }
        s
    }
}

/// Clock offsets above this are flagged; above [`CLOCK_BLOCKING_MS`] the probe's minute
/// buckets would land in the wrong minute, which blocks.
const CLOCK_WARN_MS: i64 = 2_000;
const CLOCK_BLOCKING_MS: i64 = 60_000;

struct Lines {
    lang: Lang,
    v: Vec<Line>,
}

impl Lines {
    fn push(
        &mut self,
        ok: bool,
        blocking: bool,
        label: (&str, &str),
        detail: String,
        fix: Option<(&str, &str)>,
    ) {
        let l = self.lang;
        self.v.push(Line {
            ok,
            blocking,
            label: l.t(label.0, label.1).to_string(),
            detail,
            fix: fix.map(|f| l.t(f.0, f.1).to_string()),
        });
    }
}

/// Runs every check for the config at `path`.
pub async fn run(path: &Path, lang: Lang) -> Vec<Line> {
    let mut out = Lines {
        lang,
        v: Vec::new(),
    };
    let l = lang;
    let cfg = match ProbeConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            out.push(
                false,
                true,
                ("Configuration", "Configuration"),
                e.to_string(),
                Some((
                    "corrigez la clé indiquée (voir configs/probe.example.toml)",
                    "fix the key named (see configs/probe.example.toml)",
                )),
            );
            return out.v;
        }
    };
    let resolved = match cfg.resolve() {
        Ok(r) => {
            out.push(
                true,
                true,
                ("Configuration", "Configuration"),
                format!(
                    "{} ({} {})",
                    path.display(),
                    l.t("site", "site"),
                    cfg.site_id
                ),
                None,
            );
            r
        }
        Err(e) => {
            out.push(false, true, ("Configuration", "Configuration"), e.to_string(),
                Some(("corrigez la clé indiquée, ou réinstallez le fichier écrit par `rie-collector probe-config`", "fix the key named, or reinstall the file written by `rie-collector probe-config`")));
            return out.v;
        }
    };

    for (what, file) in cfg.secret_files() {
        match world_or_group_readable(&file) {
            Some(mode) => out.push(
                false,
                false,
                ("Droits du fichier secret", "Secret file permissions"),
                format!("{} ({what}) : {mode:o}", file.display()),
                Some((
                    "chmod 600 sur ce fichier, propriétaire : l'utilisateur de la sonde",
                    "chmod 600 that file, owned by the probe user",
                )),
            ),
            None => out.push(
                true,
                false,
                ("Droits du fichier secret", "Secret file permissions"),
                format!(
                    "{} : {}",
                    file.display(),
                    l.t(
                        "lisible par son propriétaire seul",
                        "readable by its owner only"
                    )
                ),
                None,
            ),
        }
    }

    check_spool(&mut out, &cfg);
    let present = pnet_datalink::interfaces();
    for name in &cfg.capture.interfaces {
        let found = present.iter().any(|i| &i.name == name);
        out.push(
            found,
            true,
            ("Interface de capture", "Capture interface"),
            format!(
                "{name} : {}",
                if found {
                    l.t("présente", "present")
                } else {
                    l.t("absente", "missing")
                }
            ),
            Some((
                "corrigez capture.interfaces d'après `ip link`",
                "fix capture.interfaces from `ip link`",
            )),
        );
    }
    // Blocking when capture or interface-bound checks need it: without them the probe works.
    let bound_checks = cfg.links.iter().any(|l| l.interface.is_some());
    check_cap_net_raw(&mut out, !cfg.capture.interfaces.is_empty() || bound_checks);
    check_links(&mut out, &cfg, &resolved.checks).await;
    if cfg.netflow.enabled {
        check_netflow(&mut out, &cfg).await;
    }

    check_collectors(&mut out, &cfg, &resolved).await;
    out.v
}

/// Every configured collector in turn. With several, the probe works as long as one accepts
/// it: a collector that fails is then a warning, and a summary line says which are reachable.
async fn check_collectors(out: &mut Lines, cfg: &ProbeConfig, resolved: &crate::config::Resolved) {
    let l = out.lang;
    let multi = resolved.targets.len() > 1;
    let mut results = Vec::with_capacity(resolved.targets.len());
    let mut lines = Vec::new();
    for target in &resolved.targets {
        let mut one = Lines {
            lang: l,
            v: Vec::new(),
        };
        let ok = check_collector(&mut one, cfg, &resolved.token, target).await;
        if multi {
            for line in &mut one.v {
                line.label = format!("{} [{}]", line.label, target.address);
            }
        }
        results.push((target.address.clone(), ok));
        lines.push((ok, one.v));
    }
    let any = results.iter().any(|(_, ok)| *ok);
    for (ok, v) in lines {
        for mut line in v {
            // Another collector serves meanwhile: a failing one does not block the probe.
            if multi && any && !ok {
                line.blocking = false;
            }
            out.v.push(line);
        }
    }
    if multi {
        let up = results.iter().filter(|(_, ok)| *ok).count();
        let detail = format!(
            "{up}/{} : {}",
            results.len(),
            results
                .iter()
                .map(|(a, ok)| format!("{a} {}", if *ok { "✔" } else { "✘" }))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let fix = if any {
            ("la sonde utilise les autres en attendant ; corrigez ceux marqués ✘ (route, pare-feu, collector.addresses)",
             "the probe uses the others meanwhile; fix those marked ✘ (route, firewall, collector.addresses)")
        } else {
            ("aucun collecteur n'accepte la sonde : vérifiez collector.addresses, la route vers le cœur de réseau et le pare-feu",
             "no collector accepts the probe: check collector.addresses, the route to the core and the firewall")
        };
        out.push(
            up == results.len(),
            !any,
            ("Collecteurs joignables", "Collectors reachable"),
            detail,
            Some(fix),
        );
    }
}

/// DNS, TCP, TLS, token and clock against one collector; true when it accepted the probe.
async fn check_collector(
    out: &mut Lines,
    cfg: &ProbeConfig,
    token: &str,
    target: &crate::session::Target,
) -> bool {
    let l = out.lang;
    let host = target
        .address
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .unwrap_or_default();
    if host.parse::<std::net::IpAddr>().is_ok() {
        out.push(
            true,
            true,
            ("DNS", "DNS"),
            format!(
                "{host} : {}",
                l.t(
                    "adresse IP, pas de résolution nécessaire",
                    "an IP address, nothing to resolve"
                )
            ),
            None,
        );
    } else {
        match tokio::net::lookup_host(&target.address).await {
            Ok(mut addrs) => match addrs.next() {
                Some(a) => out.push(
                    true,
                    true,
                    ("DNS", "DNS"),
                    format!("{host} → {}", a.ip()),
                    None,
                ),
                None => out.push(
                    false,
                    true,
                    ("DNS", "DNS"),
                    format!("{host} : {}", l.t("aucune adresse", "no address")),
                    Some((
                        "vérifiez les résolveurs DNS du routeur (/etc/resolv.conf)",
                        "check the router's DNS resolvers (/etc/resolv.conf)",
                    )),
                ),
            },
            Err(e) => out.push(
                false,
                true,
                ("DNS", "DNS"),
                format!("{host} : {e}"),
                Some((
                    "vérifiez les résolveurs DNS du routeur (/etc/resolv.conf)",
                    "check the router's DNS resolvers (/etc/resolv.conf)",
                )),
            ),
        }
    }

    let id = Identity::new(
        cfg.site_id.clone(),
        token.to_string(),
        crate::spool::random_stream(),
    );
    let sent_at = now_ms();
    let started = Instant::now();
    let accepted = match Session::open(target, id.hello()).await {
        Ok(s) => {
            let rtt = started.elapsed();
            out.push(
                true,
                true,
                ("Collecteur joignable", "Collector reachable"),
                format!(
                    "{} ({} {} ms)",
                    target.address,
                    l.t("aller-retour", "round trip"),
                    rtt.as_millis()
                ),
                None,
            );
            out.push(
                true,
                true,
                ("Certificat TLS", "TLS certificate"),
                l.t(
                    "valide pour l'autorité configurée",
                    "valid for the configured CA",
                )
                .to_string(),
                None,
            );
            out.push(
                true,
                true,
                ("Jeton", "Token"),
                l.t("accepté par le collecteur", "accepted by the collector")
                    .to_string(),
                None,
            );
            let offset = sent_at + (rtt.as_millis() as i64) / 2 - s.welcome.collector_time_ms;
            let detail = format!(
                "{} {offset:+} ms",
                l.t("décalage avec le collecteur", "offset from the collector")
            );
            let fix = Some((
                "synchronisez l'horloge (NTP/chrony) du routeur",
                "synchronise the router's clock (NTP/chrony)",
            ));
            out.push(
                offset.abs() < CLOCK_WARN_MS,
                offset.abs() >= CLOCK_BLOCKING_MS,
                ("Horloge", "Clock"),
                detail,
                fix,
            );
            s.close().await;
            true
        }
        Err(e) => {
            let (reach, tls, token) = match &e {
                SessionError::Connect { .. } | SessionError::Timeout(_) => (false, None, None),
                SessionError::Tls { .. } => (true, Some(false), None),
                SessionError::Refused(_) => (true, Some(true), Some(false)),
                SessionError::Protocol(_) | SessionError::Io(_) | SessionError::BadPlan { .. } => {
                    (true, Some(true), None)
                }
            };
            let msg = e.to_string();
            out.push(reach, true, ("Collecteur joignable", "Collector reachable"),
                if reach { target.address.clone() } else { msg.clone() },
                Some(("vérifiez collector.address(es), la route vers le cœur de réseau et le pare-feu (port TCP du collecteur)", "check collector.address(es), the route to the core and the firewall (collector TCP port)")));
            if let Some(ok) = tls {
                out.push(ok, true, ("Certificat TLS", "TLS certificate"),
                    if ok { l.t("valide pour l'autorité configurée", "valid for the configured CA").to_string() } else { msg.clone() },
                    Some(("réinstallez ca_cert depuis le fichier écrit par `rie-collector probe-config` ; vérifiez server_name", "reinstall ca_cert from the file written by `rie-collector probe-config`; check server_name")));
            }
            if let Some(ok) = token {
                out.push(ok, true, ("Jeton", "Token"), msg.clone(),
                    Some(("demandez au NOC un nouveau fichier : `rie-collector probe-config --site SITE`", "ask the NOC for a new file: `rie-collector probe-config --site SITE`")));
            }
            if reach && tls == Some(true) && token.is_none() {
                out.push(
                    false,
                    true,
                    ("Protocole", "Protocol"),
                    msg,
                    Some((
                        "mettez à jour rie-probe ou le collecteur",
                        "upgrade rie-probe or the collector",
                    )),
                );
            }
            false
        }
    };
    accepted
}

/// One attempt of every check over each link: the link reaches the core when any answers.
/// Blocking for the primary (the site's traffic and the probe's reports ride on it), a warning
/// for a backup.
async fn check_links(
    out: &mut Lines,
    cfg: &ProbeConfig,
    targets: &[(crate::checks::TargetConfig, crate::checks::Target)],
) {
    let l = out.lang;
    for link in &cfg.links {
        let iface = link.interface.as_deref().unwrap_or("-");
        let mut parts = Vec::new();
        let mut any = false;
        for (i, (tc, target)) in targets
            .iter()
            .filter(|(tc, _)| tc.links.is_empty() || tc.links.contains(&link.id))
            .enumerate()
        {
            let bind = crate::checks::Binding::from(link);
            match crate::checks::attempt(target, &bind, cfg.checks.timeout, i as u16 + 1).await {
                Ok(rtt) => {
                    any = true;
                    parts.push(format!(
                        "{} {:.1} ms",
                        tc.label(),
                        rtt.as_secs_f64() * 1000.0
                    ));
                }
                Err(e) => parts.push(format!("{} ✘ ({e})", tc.label())),
            }
        }
        if parts.is_empty() {
            parts.push(
                l.t(
                    "aucune cible configurée ([[checks.targets]])",
                    "no target configured ([[checks.targets]])",
                )
                .to_string(),
            );
        }
        out.push(
            any,
            link.role == rie_proto::LinkRole::Primary,
            ("Lien jusqu'au cœur de réseau", "Link reaches the core"),
            format!("{} ({iface}) : {}", link.id, parts.join(", ")),
            Some((
                "vérifiez l'interface (`ip link`), la route par ce lien et l'accès opérateur ; signalez-le au NOC",
                "check the interface (`ip link`), the route over this link and the operator access; report it to the NOC",
            )),
        );
    }
}

fn check_spool(out: &mut Lines, cfg: &ProbeConfig) {
    let l = out.lang;
    let dir = cfg.spool_dir();
    let label = ("Spool", "Spool");
    let probe_file = dir.join(".check");
    let writable = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&probe_file, b"check"))
        .and_then(|()| std::fs::remove_file(&probe_file));
    if let Err(e) = writable {
        out.push(
            false,
            true,
            label,
            format!("{} : {e}", dir.display()),
            Some((
                "créez le répertoire et donnez-le à l'utilisateur de la sonde (chown rie-probe)",
                "create the directory and give it to the probe user (chown rie-probe)",
            )),
        );
        return;
    }
    let budget = cfg.spool.budget_mb * 1024 * 1024;
    match rustix::fs::statvfs(&dir) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let detail = format!(
                "{} : {} {} MiB, {} {} MiB",
                dir.display(),
                l.t("inscriptible ; libre", "writable; free"),
                free / (1024 * 1024),
                l.t("budget", "budget"),
                cfg.spool.budget_mb
            );
            out.push(
                free >= budget,
                false,
                label,
                detail,
                Some((
                    "libérez de la place ou réduisez spool.budget_mb",
                    "free some space or lower spool.budget_mb",
                )),
            );
        }
        Err(e) => out.push(
            false,
            false,
            label,
            format!("{} : {e}", dir.display()),
            None,
        ),
    }
}

/// CAP_NET_RAW (bit 13 of the effective set) is what packet capture needs.
fn check_cap_net_raw(out: &mut Lines, blocking: bool) {
    let eff = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .and_then(|v| u64::from_str_radix(&v, 16).ok());
    let has = eff.is_some_and(|e| e & (1 << 13) != 0);
    let l = out.lang;
    out.push(
        has,
        blocking,
        (
            "Droit de capture (CAP_NET_RAW)",
            "Capture permission (CAP_NET_RAW)",
        ),
        if has {
            l.t("présent", "present")
        } else {
            l.t(
                "absent : la capture de paquets sera impossible",
                "missing: packet capture will not work",
            )
        }
        .to_string(),
        Some((
            "lancez la sonde par son unité systemd (AmbientCapabilities=CAP_NET_RAW)",
            "run the probe through its systemd unit (AmbientCapabilities=CAP_NET_RAW)",
        )),
    );
}

/// NetFlow datagrams arriving on `netflow.listen`: listens for `netflow.check_wait` when the
/// port is free; when the running probe holds it, reads what it counted in its status file.
async fn check_netflow(out: &mut Lines, cfg: &ProbeConfig) {
    let l = out.lang;
    let label = (
        "Datagrammes NetFlow reçus sur le port configuré",
        "NetFlow datagrams arriving on the configured port",
    );
    let addr = cfg.netflow.listen;
    let fix_export = (
        "configurez l'export NetFlow du routeur vers l'adresse de la sonde, port indiqué (ex. `ip flow-export destination ADRESSE PORT`), et ouvrez ce port UDP",
        "configure the router's NetFlow export to the probe's address and this port (e.g. `ip flow-export destination ADDRESS PORT`), and open that UDP port",
    );
    let socket = crate::sources::netflow::bind(addr)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(tokio::net::UdpSocket::from_std);
    match socket {
        Ok(socket) => {
            let mut buf = vec![0u8; 65_536];
            let got =
                tokio::time::timeout(cfg.netflow.check_wait, socket.recv_from(&mut buf)).await;
            match got {
                Ok(Ok((n, from))) => {
                    let version = if n >= 2 {
                        u16::from_be_bytes([buf[0], buf[1]])
                    } else {
                        0
                    };
                    let version = match version {
                        10 => "IPFIX".to_string(),
                        v => format!("v{v}"),
                    };
                    out.push(
                        true,
                        true,
                        label,
                        format!(
                            "{addr} : {} {} ({version})",
                            l.t("datagramme reçu de", "datagram received from"),
                            from.ip()
                        ),
                        None,
                    );
                }
                Ok(Err(e)) => out.push(
                    false,
                    true,
                    label,
                    format!("{addr} : {e}"),
                    Some(fix_export),
                ),
                Err(_) => out.push(
                    false,
                    true,
                    label,
                    format!(
                        "{addr} : {} {} s",
                        l.t("rien reçu en", "nothing received in"),
                        cfg.netflow.check_wait.as_secs()
                    ),
                    Some(fix_export),
                ),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            // Most likely the running probe: ask it what it received.
            let status = std::fs::read(crate::runner::status_path(&cfg.data_dir))
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::runner::Status>(&b).ok())
                .filter(|s| s.running);
            match status.and_then(|s| s.netflow_datagrams) {
                Some(n) if n > 0 => out.push(
                    true,
                    true,
                    label,
                    format!(
                        "{addr} : {n} {}",
                        l.t(
                            "datagrammes reçus par la sonde en marche",
                            "datagrams received by the running probe"
                        )
                    ),
                    None,
                ),
                Some(_) => out.push(
                    false,
                    true,
                    label,
                    format!(
                        "{addr} : {}",
                        l.t(
                            "la sonde en marche n'a encore rien reçu",
                            "the running probe has received nothing yet"
                        )
                    ),
                    Some(fix_export),
                ),
                None => out.push(
                    false,
                    true,
                    label,
                    format!("{addr} : {e}"),
                    Some((
                        "un autre programme occupe ce port : arrêtez-le ou changez netflow.listen",
                        "another program holds this port: stop it or change netflow.listen",
                    )),
                ),
            }
        }
        Err(e) => out.push(
            false,
            true,
            label,
            format!("{addr} : {e}"),
            Some((
                "corrigez netflow.listen (une adresse de ce routeur)",
                "fix netflow.listen (an address of this router)",
            )),
        ),
    }
}

/// True when no blocking check failed.
pub fn passed(lines: &[Line]) -> bool {
    lines.iter().all(|l| l.ok || !l.blocking)
}
