//! A site with two access links, in network namespaces created for one test and removed when
//! dropped: the probe's router (`site`) reaches the core (`core`) over a primary veth
//! (10.91.1.0/24) and a backup veth (10.91.2.0/24), with default routes of metric 10 and 20 as a
//! router would have them. The core answers on 10.91.255.1 (the core point of presence). A
//! third veth (10.91.9.0/30) joins the site to the test's own namespace, so that the probe keeps
//! reporting to the collector while the test cuts both access links (an out-of-band path, as a
//! management network would give).

use std::process::{Command, Stdio};

use crate::Guard;

pub const CORE_POP: &str = "10.91.255.1";
/// The collector's address on the management veth, in the test's namespace.
pub const MGMT_COLLECTOR: &str = "10.91.9.1";

pub struct SiteNet {
    pub site: String,
    pub core: String,
    /// Interface names in `site`: primary, backup.
    pub primary_if: String,
    pub backup_if: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is needed: apt-get install iproute2");
    assert!(
        out.status.success(),
        "ip {} failed: {} (network-namespace tests need root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SiteNet {
    pub fn new(tag: &str) -> Self {
        let id = std::process::id() % 100_000;
        let n = Self {
            site: format!("rie-{tag}-site-{id}"),
            core: format!("rie-{tag}-core-{id}"),
            primary_if: format!("rp{id}"),
            backup_if: format!("rb{id}"),
        };
        let (cp, cb, rm, hm) = (
            format!("cp{id}"),
            format!("cb{id}"),
            format!("rm{id}"),
            format!("hm{id}"),
        );
        ip(&["netns", "add", &n.site]);
        ip(&["netns", "add", &n.core]);
        for (r, c, net) in [(&n.primary_if, &cp, "1"), (&n.backup_if, &cb, "2")] {
            ip(&[
                "link", "add", r, "netns", &n.site, "type", "veth", "peer", "name", c, "netns",
                &n.core,
            ]);
            ip(&[
                "-n",
                &n.site,
                "addr",
                "add",
                &format!("10.91.{net}.2/24"),
                "dev",
                r,
            ]);
            ip(&[
                "-n",
                &n.core,
                "addr",
                "add",
                &format!("10.91.{net}.1/24"),
                "dev",
                c,
            ]);
            ip(&["-n", &n.site, "link", "set", r, "up"]);
            ip(&["-n", &n.core, "link", "set", c, "up"]);
        }
        ip(&[
            "-n",
            &n.core,
            "addr",
            "add",
            &format!("{CORE_POP}/32"),
            "dev",
            "lo",
        ]);
        for ns in [&n.site, &n.core] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        n.default_route(true);
        n.default_route(false);
        // Management path to the test's namespace.
        ip(&[
            "link", "add", &hm, "type", "veth", "peer", "name", &rm, "netns", &n.site,
        ]);
        ip(&["addr", "add", &format!("{MGMT_COLLECTOR}/30"), "dev", &hm]);
        ip(&["link", "set", &hm, "up"]);
        ip(&["-n", &n.site, "addr", "add", "10.91.9.2/30", "dev", &rm]);
        ip(&["-n", &n.site, "link", "set", &rm, "up"]);
        n
    }

    /// (Re)installs the default route over the primary or the backup, as the router's routing
    /// would once the link is back.
    pub fn default_route(&self, primary: bool) {
        let (gw, dev, metric) = if primary {
            ("10.91.1.1", &self.primary_if, "10")
        } else {
            ("10.91.2.1", &self.backup_if, "20")
        };
        ip(&[
            "-n", &self.site, "route", "replace", "default", "via", gw, "dev", dev, "metric",
            metric,
        ]);
    }

    /// Cuts or restores an access link at the site's end (restoring puts its route back).
    pub fn set_link(&self, primary: bool, up: bool) {
        let dev = if primary {
            &self.primary_if
        } else {
            &self.backup_if
        };
        ip(&[
            "-n",
            &self.site,
            "link",
            "set",
            dev,
            if up { "up" } else { "down" },
        ]);
        if up {
            self.default_route(primary);
        }
    }

    /// Cuts or restores the management path (the probe's way to the collector).
    pub fn set_mgmt(&self, up: bool) {
        let dev = format!("rm{}", std::process::id() % 100_000);
        ip(&[
            "-n",
            &self.site,
            "link",
            "set",
            &dev,
            if up { "up" } else { "down" },
        ]);
    }

    /// A command to run inside `ns`.
    pub fn exec(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    /// An HTTP server in the core on CORE_POP:8080 (the TCP and HTTP checks' target).
    /// Returns once it answers.
    pub fn core_http(&self) -> Guard {
        let g = Guard(
            Self::exec(&self.core, "python3")
                .args(["-m", "http.server", "8080", "--bind", CORE_POP])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("python3 is needed"),
        );
        let url = format!("http://{CORE_POP}:8080/");
        for _ in 0..100 {
            let ok = Self::exec(&self.core, "curl")
                .args(["-sf", "-o", "/dev/null", &url])
                .status()
                .expect("curl is needed: apt-get install curl")
                .success();
            if ok {
                return g;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the core's HTTP server never answered on {url}");
    }

    /// A DNS server in the core on CORE_POP:53 (dnsmasq, no upstream) that knows one name,
    /// `rie.gouv.fr` → 10.0.0.1, for the DNS checks.
    pub fn core_dns(&self) -> Guard {
        let g = Guard(
            Self::exec(&self.core, "dnsmasq")
                .args([
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    &format!("--listen-address={CORE_POP}"),
                    "--address=/rie.gouv.fr/10.0.0.1",
                    "--user=root",
                    "--pid-file",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq is needed: apt-get install dnsmasq-base"),
        );
        // The port is bound before dnsmasq goes on; give it a moment, then check it lives.
        std::thread::sleep(std::time::Duration::from_millis(300));
        g
    }

    /// Drops a share of the packets the core receives from one access link (nftables random
    /// drop; `tc netem` does not exist on these machines). `percent` 0 removes the rule.
    pub fn core_loss(&self, primary: bool, percent: u32) {
        let dev = if primary { "cp" } else { "cb" };
        let dev = format!("{dev}{}", std::process::id() % 100_000);
        let nft = |script: &str| {
            let out = Self::exec(&self.core, "nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin
                        .take()
                        .expect("stdin")
                        .write_all(script.as_bytes())?;
                    c.wait_with_output()
                })
                .expect("nft (nftables) is needed: apt-get install nftables");
            assert!(
                out.status.success(),
                "nft failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        nft("table inet rieloss\ndelete table inet rieloss\n");
        if percent > 0 {
            let which = if percent >= 100 {
                String::new()
            } else {
                format!("numgen random mod 100 < {percent} ")
            };
            nft(&format!(
                "table inet rieloss {{\n chain c {{\n  type filter hook prerouting priority -300;\n  iifname \"{dev}\" {which}drop\n }}\n}}\n"
            ));
        }
    }
}

impl Drop for SiteNet {
    fn drop(&mut self) {
        // Deleting the namespaces destroys their veths and the peers' ends in ours.
        for ns in [&self.site, &self.core] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
