//! The bridge network sandboxes join: created with the runtime's options when missing,
//! refused when it exists with others.

use std::collections::HashMap;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::InspectNetworkOptions;

use super::{DockerRuntime, SANDBOX_LABEL, api_err, is_not_found};
use crate::error::{Error, Result};

impl DockerRuntime {
    pub(super) fn ensure_network(&self) -> Result<()> {
        let c = &self.cfg;
        let want_opts: HashMap<String, String> = [
            ("com.docker.network.bridge.name", c.bridge.as_str()),
            // Containers on the bridge cannot talk to each other (Docker drops
            // bridge-to-bridge forwarding); the firewall drops it again per sandbox.
            ("com.docker.network.bridge.enable_icc", "false"),
            ("com.docker.network.bridge.enable_ip_masquerade", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let docker = &self.docker;
        self.block(async {
            let existing = match docker.inspect_network(&c.network, None::<InspectNetworkOptions>).await {
                Ok(n) => Some(n),
                Err(e) if is_not_found(&e) => None,
                Err(e) => return Err(api_err("docker network inspect")(e)),
            };
            let existing = match existing {
                Some(n) => n,
                None => {
                    let req = NetworkCreateRequest {
                        name: c.network.clone(),
                        driver: Some("bridge".into()),
                        ipam: Some(Ipam {
                            config: Some(vec![IpamConfig { subnet: Some(c.subnet.to_string()), ..Default::default() }]),
                            ..Default::default()
                        }),
                        options: Some(want_opts.clone()),
                        labels: Some([(SANDBOX_LABEL.to_string(), "1".to_string())].into()),
                        ..Default::default()
                    };
                    let created = docker.create_network(req).await;
                    // Another runtime may be creating it meanwhile: the Engine answers 409,
                    // or 403 ("Pool overlaps") when it checks the subnet first, as runtimes
                    // starting together on a fresh Engine found, possibly before the other
                    // creation is visible. Whether it exists within a second decides.
                    let mut tries = if created.is_ok() { 1 } else { 20 };
                    loop {
                        tries -= 1;
                        match docker.inspect_network(&c.network, None::<InspectNetworkOptions>).await {
                            Ok(n) => break n,
                            Err(e) if tries == 0 || !is_not_found(&e) => {
                                let e = created.err().unwrap_or(e);
                                return Err(api_err(&format!("docker network create {}", c.network))(e));
                            }
                            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                        }
                    }
                }
            };
            let opts = existing.options.unwrap_or_default();
            let subnets: Vec<String> =
                existing.ipam.and_then(|i| i.config).unwrap_or_default().into_iter().filter_map(|c| c.subnet).collect();
            // Options Docker left at their default are not listed (masquerading is on).
            let opts_ok = want_opts
                .iter()
                .all(|(k, v)| opts.get(k) == Some(v) || (k.ends_with("enable_ip_masquerade") && !opts.contains_key(k)));
            if !opts_ok || subnets != [c.subnet.to_string()] {
                return Err(Error::InvalidSpec(format!(
                    "docker network {} exists with other settings (options {opts:?}, subnets {subnets:?}); \
                     remove it, and Sandstream creates it with bridge {}, subnet {} and \
                     inter-container communication off",
                    c.network, c.bridge, c.subnet
                )));
            }
            Ok(())
        })
    }
}
