//! `rie-probe status`: what the running probe last wrote in `data_dir/status.json`, for the
//! technician at the router, without a browser. French by default, English with `--lang en`.

use crate::runner::Status;
use rie_common::now_ms;

/// Language of technician-facing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    pub fn t<'a>(self, fr: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Fr => fr,
            Lang::En => en,
        }
    }
}

/// "12 s", "5 min", "3 h 20 min", "2 j".
pub fn ago(ms: i64, lang: Lang) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} {}", s / 86_400, lang.t("j", "d")),
    }
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// Seconds after which a status file that says "running" is considered stale.
const STALE_MS: i64 = 5_000;

/// The status as lines of text; the flag tells whether the probe runs and is connected.
pub fn render(st: &Status, lang: Lang) -> (String, bool) {
    let now = now_ms();
    let age = now - st.updated_ms;
    let alive = st.running && age < STALE_MS;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line(
        lang.t("Sonde", "Probe"),
        format!(
            "{} — rie-probe {}, pid {} — {}",
            st.site,
            st.version,
            st.pid,
            if alive {
                lang.t("en marche", "running").to_string()
            } else if st.running {
                format!(
                    "{} {}",
                    lang.t(
                        "ne répond plus : statut vieux de",
                        "not responding: status is"
                    ),
                    ago(age, lang)
                )
            } else {
                format!(
                    "{} {}",
                    lang.t("arrêtée depuis", "stopped for"),
                    ago(age, lang)
                )
            }
        ),
    );
    line(
        lang.t("Collecteur", "Collector"),
        match (st.connected && alive, st.connected_since_ms) {
            (true, Some(since)) => format!(
                "{} — {} {}",
                st.collector,
                lang.t("connecté depuis", "connected for"),
                ago(now - since, lang)
            ),
            _ => format!(
                "{} — {}",
                st.collector,
                lang.t("NON connecté", "NOT connected")
            ),
        },
    );
    if st.collectors.len() > 1 {
        line(
            lang.t("Collecteurs configurés", "Configured collectors"),
            format!(
                "{} ({} {})",
                st.collectors.join(", "),
                st.failovers,
                lang.t("bascule(s) depuis le démarrage", "failover(s) since start")
            ),
        );
    }
    line(
        lang.t("Dernier acquittement", "Last acknowledgement"),
        match (st.last_ack_seq, st.last_ack_ms) {
            (Some(seq), Some(at)) => format!(
                "{} {seq}, {} {}",
                lang.t("lot n°", "batch #"),
                lang.t("il y a", "ago:"),
                ago(now - at, lang)
            ),
            _ => lang
                .t("aucun depuis le démarrage", "none since start")
                .to_string(),
        },
    );
    let sp = &st.spool;
    line(
        "Spool",
        format!(
            "{} {}, {}{}; {} {}, {} {}",
            sp.batches,
            lang.t("lot(s) en attente", "batch(es) waiting"),
            kib(sp.bytes),
            sp.oldest_ms
                .map(|o| format!(
                    ", {} {}",
                    lang.t("le plus ancien date de", "oldest from"),
                    ago(now - o, lang)
                ))
                .unwrap_or_default(),
            sp.dropped,
            lang.t("perdu(s)", "dropped"),
            sp.write_errors,
            lang.t("erreur(s) d'écriture", "write error(s)")
        ),
    );
    let links = if st.links.is_empty() {
        lang.t("pas encore mesurés", "not measured yet").to_string()
    } else {
        st.links
            .iter()
            .map(|l| {
                format!(
                    "{} {}{}",
                    l.link,
                    if l.up {
                        lang.t("joignable", "up")
                    } else {
                        lang.t("EN PANNE", "DOWN")
                    },
                    if l.active {
                        lang.t(" (porte le trafic)", " (carries traffic)")
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(" ; ")
    };
    line(lang.t("Liens", "Links"), links);
    if let Some(n) = st.capture_packets {
        line(
            "Capture",
            format!(
                "{n} {}, {}; {} {}, {} {}",
                lang.t("paquets IP comptés", "IP packets counted"),
                match st.capture_kernel_drops {
                    Some(0) => lang.t("aucun perdu par le noyau", "none dropped by the kernel").to_string(),
                    Some(d) => format!(
                        "{d} {}",
                        lang.t(
                            "PERDUS par le noyau (tampon plein : augmentez capture.socket_buffer_kib et net.core.rmem_max)",
                            "DROPPED by the kernel (buffer full: raise capture.socket_buffer_kib and net.core.rmem_max)"
                        )
                    ),
                    None => lang.t("pertes du noyau inconnues", "kernel drops unknown").to_string(),
                },
                st.flow_table_entries.unwrap_or(0),
                lang.t("flux ouverts", "open flows"),
                st.flow_table_evictions.unwrap_or(0),
                lang.t("évincés (table pleine)", "evicted (table full)"),
            ),
        );
    }
    if let Some(n) = st.netflow_datagrams {
        line(
            "NetFlow",
            format!(
                "{n} {}",
                lang.t(
                    "datagrammes reçus du routeur",
                    "datagrams received from the router"
                )
            ),
        );
    }
    line(
        lang.t("Reconnexions", "Reconnections"),
        st.reconnects.to_string(),
    );
    line(
        lang.t("Dernière erreur", "Last error"),
        st.last_error.clone().unwrap_or_else(|| "—".into()),
    );
    (out, alive && st.connected)
}
