//! Kernel drops of the live capture, counted exactly: the probe captures on a veth in a
//! namespace, is frozen (SIGSTOP) while the other end floods it, so the kernel must drop what
//! its capture socket's small buffer cannot hold. Every frame that crossed the interface is then
//! either counted by the capture or reported as dropped by the kernel:
//! captured + dropped = the interface's own rx + tx frame counters, exactly.

// Tests panic on the unexpected: that is their job.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use rie_e2e::{bin, run_ok, site_net::ip, Collector, NetnsPair, Probe};

/// rx + tx frames of `dev` in `ns`, from the kernel's interface statistics.
fn frames(ns: &str, dev: &str) -> u64 {
    let out = run_ok(Command::new("ip").args(["-n", ns, "-s", "-j", "link", "show", "dev", dev]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &v[0]["stats64"];
    s["rx"]["packets"].as_u64().unwrap() + s["tx"]["packets"].as_u64().unwrap()
}

fn mac(ns: &str, dev: &str) -> String {
    let out = run_ok(Command::new("ip").args(["-n", ns, "-j", "link", "show", "dev", dev]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

fn counter(prom: &str, name: &str) -> u64 {
    prom.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}{{site=\"S1\"}} ")))
        .unwrap_or_else(|| panic!("no {name} in {prom}"))
        .parse()
        .unwrap()
}

#[test]
fn every_frame_is_either_captured_or_counted_as_a_kernel_drop() {
    let net = NetnsPair::new("drops");
    // Only IPv4 frames may cross the link, since the capture counts IP packets: no IPv6 (no
    // multicast listener reports, no neighbour discovery) and static ARP entries.
    for (ns, dev) in [(&net.a, &net.veth_a), (&net.b, &net.veth_b)] {
        run_ok(
            NetnsPair::exec(ns, "sysctl")
                .args(["-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]),
        );
    }
    let (mac_a, mac_b) = (mac(&net.a, &net.veth_a), mac(&net.b, &net.veth_b));
    ip(&[
        "-n",
        &net.a,
        "neigh",
        "replace",
        "10.99.0.2",
        "lladdr",
        &mac_b,
        "dev",
        &net.veth_a,
        "nud",
        "permanent",
    ]);
    ip(&[
        "-n",
        &net.b,
        "neigh",
        "replace",
        "10.99.0.1",
        "lladdr",
        &mac_a,
        "dev",
        &net.veth_b,
        "nud",
        "permanent",
    ]);

    // The collector is not reachable from the namespace: the probe spools, which does not
    // matter here; what is checked is its own counting.
    let collector = Collector::start();
    let mut probe = Probe::prepare(&collector, "S1", "1s", None);
    let mut cfg = std::fs::read_to_string(&probe.config).unwrap();
    cfg.push_str(&format!(
        "\n[capture]\ninterfaces = [\"{}\"]\nsocket_buffer_kib = 64\n",
        net.veth_a
    ));
    std::fs::write(&probe.config, cfg).unwrap();
    probe.spawn_in_netns(&net.a);
    probe.wait_status("the capture", Duration::from_secs(15), |s| {
        s["capture_packets"].is_u64() && s["capture_kernel_drops"].is_u64()
    });
    // Quiet link: the status (written every second) and the interface agree on a start.
    std::thread::sleep(Duration::from_millis(1500));
    let before = frames(&net.a, &net.veth_a);
    let st = probe.status();
    let (captured0, dropped0) = (
        st["capture_packets"].as_u64().unwrap(),
        st["capture_kernel_drops"].as_u64().unwrap(),
    );
    assert_eq!(dropped0, 0, "{st}");

    // Frozen probe, flooded link: 3,000 datagrams of 1,000 bytes against a 64 KiB buffer.
    probe.signal("STOP");
    run_ok(NetnsPair::exec(&net.b, "python3").args([
        "-c",
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(3000):\n    s.sendto(bytes(1000), ('10.99.0.1', 9))\n",
    ]));
    std::thread::sleep(Duration::from_millis(500));
    probe.signal("CONT");
    // The capture reads what its buffer held; nothing else crosses the link.
    std::thread::sleep(Duration::from_millis(1500));
    let after = frames(&net.a, &net.veth_a);
    assert_eq!(probe.terminate(), Some(0), "{}", probe.log());

    let prom = std::fs::read_to_string(probe.data_dir.join("metrics.prom")).unwrap();
    let captured = counter(&prom, "rie_probe_capture_packets_total") - captured0;
    let dropped = counter(&prom, "rie_probe_capture_kernel_drops_total") - dropped0;
    eprintln!("captured {captured}, dropped by the kernel {dropped}");
    assert!(
        dropped > 0,
        "a frozen capture behind a 64 KiB buffer must lose frames: {prom}"
    );
    assert_eq!(
        captured + dropped,
        after - before,
        "captured {captured} + dropped {dropped} vs {} frames on the interface\n{prom}\n{}",
        after - before,
        probe.log()
    );

    // The technician sees it in `rie-probe status` (which exits non-zero: the probe stopped).
    let out = Command::new(bin("rie-probe"))
        .args([
            "status",
            "--config",
            probe.config.to_str().unwrap(),
            "--lang",
            "en",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains(&format!("{} DROPPED by the kernel", dropped + dropped0)),
        "{out}"
    );
}
