//! The thin shell under [`config::generate`](super::config::generate): reads this
//! node's interfaces and their addresses (`getifaddrs`, through `pnet_datalink`, the
//! crate the GARP sender already uses). An address with its prefix length is the
//! connected route the kernel derives from it, which is all the generator needs: which
//! interface holds a master's address or the VIP's subnet.

use super::config::{Facts, LocalInterface};

/// This node's interfaces (in the caller's network namespace).
pub fn facts() -> Facts {
    let interfaces = pnet_datalink::interfaces()
        .into_iter()
        .map(|i| LocalInterface {
            up: i.is_up(),
            loopback: i.is_loopback(),
            addrs: i.ips.iter().map(|n| (n.ip(), n.prefix())).collect(),
            name: i.name,
        })
        .collect();
    Facts { interfaces }
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_found() {
        let facts = super::facts();
        let lo = facts
            .interfaces
            .iter()
            .find(|i| i.loopback)
            .unwrap_or_else(|| panic!("no loopback interface in {facts:?}"));
        assert!(
            lo.addrs
                .contains(&(std::net::Ipv4Addr::LOCALHOST.into(), 8)),
            "{lo:?}"
        );
    }
}
