//! `[[gateway]]` checks that need more than one table: each gateway's addresses against the
//! `[sip]` listener (see [`call_runtime::gateways::check`]), its failover and ping keys, and the
//! gateway groups dial-plan rules route to.

use crate::config::{Config, GatewayConfig, InvalidValue, SipConfig};

/// Checks gateway `i`'s URI, address, From, failover codes and ping thresholds.
pub(crate) fn validate(i: usize, g: &GatewayConfig, sip: &SipConfig) -> Result<(), InvalidValue> {
    let key = |name: &str| format!("gateway[{i}].{name}");
    let settings = call_runtime::settings::GatewaySettings::from(g);
    call_runtime::gateways::check(&settings, sip.listen.ip(), sip.rtp_address)
        .map_err(|bad| InvalidValue::new(key(bad.key), bad.problem))?;
    if g.group.trim().is_empty() {
        return Err(InvalidValue::new(key("group"), "must not be empty"));
    }
    if let Some(code) = g
        .failover_codes
        .iter()
        .find(|c| !(300..=699).contains(*c) || matches!(c, 401 | 407))
    {
        return Err(InvalidValue::new(
            key("failover_codes"),
            format!("entry {code} is not a final failure code (300-699, not 401/407, which are answered with credentials)"),
        ));
    }
    if g.options_interval_secs > 0 {
        for (name, value) in [
            ("options_down_after", g.options_down_after),
            ("options_up_after", g.options_up_after),
        ] {
            if value == 0 {
                return Err(InvalidValue::new(key(name), "must be at least 1"));
            }
        }
    }
    if g.register {
        if g.username.is_none() {
            return Err(InvalidValue::new(
                key("register"),
                format!("needs gateway[{i}].username and gateway[{i}].password"),
            ));
        }
        if g.register_expires_secs < 60 {
            return Err(InvalidValue::new(
                key("register_expires_secs"),
                "must be at least 60",
            ));
        }
        if let Some(registrar) = &g.registrar {
            let host = call_runtime::gateways::uri_host_port(registrar);
            if !(registrar.starts_with("sip:") || registrar.starts_with("sips:"))
                || rsipstack_free_parse(registrar).is_err()
                || call_runtime::gateways::split_host_port(host).is_err()
            {
                return Err(InvalidValue::new(
                    key("registrar"),
                    format!("must be a sip: or sips: URI with a host, got {registrar:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// Parses a SIP URI through the runtime's check (the server does not depend on rsipstack).
fn rsipstack_free_parse(uri: &str) -> Result<(), ()> {
    call_runtime::gateways::parse_uri(uri).map_err(|_| ())
}

/// Checks that every `gateway_group` a dial-plan rule names has an enabled gateway.
pub(crate) fn validate_routes(config: &Config) -> Result<(), InvalidValue> {
    for (i, rule) in config.dialplan.rules.iter().enumerate() {
        let Some(group) = &rule.gateway_group else {
            continue;
        };
        if !config
            .gateways
            .iter()
            .any(|g| g.enabled && &g.group == group)
        {
            return Err(InvalidValue::new(
                format!("dialplan.rule[{i}].gateway_group"),
                format!("names {group:?}, which no enabled [[gateway]] has as its group"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn refused(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn gateway_mistakes_are_refused_with_the_key_named() {
        for (text, key) in [
            ("[[gateway]]\nuri = \"sip:{number}@\"\n", "gateway[0].uri"),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx:99999\"\n",
                "gateway[0].uri",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx\"\naddress = \"pbx\"\n",
                "gateway[0].address",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx\"\nfrom = \"openum\"\n",
                "gateway[0].from",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx\"\nfailover_codes = [200]\n",
                "gateway[0].failover_codes",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx\"\noptions_interval_secs = 5\noptions_down_after = 0\n",
                "gateway[0].options_down_after",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx\"\ngroup = \"\"\n",
                "gateway[0].group",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx\"\nregister = true\n",
                "gateway[0].register",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx\"\nregister = true\nusername = \"u\"\npassword = \"p\"\nregistrar = \"sip:\"\n",
                "gateway[0].registrar",
            ),
            (
                "[[gateway]]\nuri = \"sip:{number}@pbx\"\n[[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"xxxxxxxxxx\"\ndial = \"xxxxxxxxxx\"\ngateway_group = \"pstn\"\n",
                "dialplan.rule[0].gateway_group",
            ),
        ] {
            let err = refused(text);
            assert!(err.contains(key), "{key} not named in {err:?}");
        }
    }

    #[test]
    fn a_remote_gateway_with_the_default_loopback_listener_is_refused() {
        let err = refused("[[gateway]]\nuri = \"sip:{number}@198.51.100.7:5060\"\n");
        assert!(err.contains("gateway[0].uri"), "{err}");
        assert!(err.contains("sip.listen 127.0.0.1"), "{err}");
        let err = refused(
            "[sip]\nlisten = \"192.0.2.10:5060\"\n[[gateway]]\nuri = \"sip:{number}@198.51.100.7:5060\"\n",
        );
        assert!(err.contains("sip.rtp_address 127.0.0.1"), "{err}");
        Config::parse(
            "[sip]\nlisten = \"192.0.2.10:5060\"\nrtp_address = \"192.0.2.10\"\n[[gateway]]\nuri = \"sip:{number}@198.51.100.7:5060\"\n",
        )
        .unwrap();
    }

    #[test]
    fn gateways_without_priority_keep_file_order_and_groups_route() {
        let config = Config::parse(
            "[[gateway]]\nname = \"a\"\nuri = \"sip:{number}@127.0.0.2\"\n\
             [[gateway]]\nname = \"off\"\nuri = \"sip:{number}@127.0.0.3\"\nenabled = false\n\
             [[gateway]]\nname = \"b\"\nuri = \"sip:{number}@127.0.0.4\"\n\
             [[gateway]]\nname = \"c\"\nuri = \"sip:{number}@127.0.0.5\"\ngroup = \"pstn\"\npriority = 0\n\
             [[dialplan.rule]]\ngroup = \"any\"\nkind = \"national\"\nmask = \"xxxxxxxxxx\"\ndial = \"xxxxxxxxxx\"\ngateway_group = \"pstn\"\n",
        )
        .unwrap();
        let settings = config.gateway_settings();
        let shown: Vec<(&str, &str, u32)> = settings
            .iter()
            .map(|g| (g.name.as_str(), g.group.as_str(), g.priority))
            .collect();
        assert_eq!(
            shown,
            [("a", "default", 0), ("b", "default", 2), ("c", "pstn", 0)]
        );
        assert_eq!(settings[0].failover_codes, [408, 503]);
        assert_eq!(settings[0].options, None);
    }
}
