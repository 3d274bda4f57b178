//! What the mtail component plans for each `mtail_address`: whether it runs, and which
//! address the pre-flight check must find on the host.

#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::path::Path;

use chatmail_core::config::Config;
use chatmail_core::engine;
use chatmail_core::plan::{ActivatePlan, LocalAddress, Service};
use chatmail_core::{Component, Facts, Templates};
use chatmail_mtail::Mtail;

fn activation(settings: &str) -> ActivatePlan {
    let components: [&'static dyn Component; 1] = [&Mtail];
    let templates = Templates::new(&components, None).unwrap();
    let ini = format!("[params]\nmail_domain = chat.example.org\n{settings}");
    let config = Config::parse(&ini, Path::new("chatmail.ini"), &|_| None).unwrap();
    let facts = Facts {
        arch: "x86_64".into(),
        deb_arch: "amd64".into(),
        systemd: true,
        container: false,
        binaries: "/nonexistent".into(),
        installed: Default::default(),
    };
    let mut plans = engine::plan(&components, Some(&config), &facts, &templates).unwrap();
    plans.remove(0).activate.unwrap()
}

#[test]
fn an_ip_address_must_belong_to_the_host() {
    let activate = activation("mtail_address = 10.8.0.1\n");
    assert_eq!(activate.services[0].unit, "mtail.service");
    assert!(activate.services[0].running);
    assert_eq!(
        activate.addresses,
        [LocalAddress {
            address: "10.8.0.1".parse().unwrap(),
            setting: "mtail_address".into(),
        }]
    );
}

#[test]
fn localhost_needs_no_check_and_no_address_stops_mtail() {
    let activate = activation("mtail_address = localhost\n");
    assert!(activate.services[0].running);
    assert!(activate.addresses.is_empty());

    let activate = activation("");
    assert_eq!(activate.services, [Service::stopped("mtail.service")]);
    assert!(activate.addresses.is_empty() && activate.ports.is_empty());
}
