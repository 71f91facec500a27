//! The dial plan, modelled on Exchange UM's (telephony.md §1): classify the normalised number
//! (extension, national, international), refuse premium ranges and — unless a rule allows it —
//! anything international, then match number masks that both allow-list and rewrite the number
//! into what the gateway is sent.
//!
//! Rules are `(group, kind, mask, dial)`: the mask's `x` characters are wildcards whose digits are
//! copied, in order, into the `x` characters of `dial` (e.g. mask `425xxxxxxx`, dial
//! `91425xxxxxxx`). A user may use the rules of the groups their policy allows. With no rules at
//! all, extensions and national numbers are dialled as typed and international ones are refused;
//! once rules exist, a number must match an allowed rule (Exchange's behaviour).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::InvalidValue;

/// What kind of number was dialled.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum NumberKind {
    /// A short internal extension.
    Extension,
    /// A number in the dial plan's own country.
    National,
    /// A number abroad.
    International,
}

/// `[dialplan]` configuration.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DialPlanConfig {
    /// `country_code`: the dial plan's country code without `+` (e.g. `"1"`, `"44"`); empty
    /// means every `+` number is international.
    pub country_code: String,
    /// `national_prefix`: the trunk prefix people dial before national numbers (`"0"` in much of
    /// Europe, `"1"` in North America); stripped when present.
    pub national_prefix: String,
    /// `international_prefixes`: access codes that start an international number. `00` and
    /// `011` are always treated as international, whatever is configured, so they cannot be used
    /// to disguise an international call as a national one.
    pub international_prefixes: Vec<String>,
    /// `extension_lengths`: digit counts that are internal extensions.
    pub extension_lengths: Vec<usize>,
    /// `national_lengths`: allowed digit counts of a national number (after the trunk prefix).
    /// Empty: 6 to 12.
    pub national_lengths: Vec<usize>,
    /// `premium_prefixes`: national number prefixes that are never dialled (premium rate).
    pub premium_prefixes: Vec<String>,
    /// `international_premium_prefixes`: international prefixes (country code first) that are
    /// never dialled, even when a rule would allow them (premium and satellite ranges).
    pub international_premium_prefixes: Vec<String>,
    /// `allowed_groups`: the groups every user may use (`"*"` = all).
    pub allowed_groups: Vec<String>,
    /// `[dialplan.user_groups]`: per-user group lists that replace `allowed_groups`.
    pub user_groups: BTreeMap<String, Vec<String>>,
    /// `[[dialplan.rule]]`.
    #[serde(rename = "rule")]
    pub rules: Vec<RuleConfig>,
}

impl Default for DialPlanConfig {
    fn default() -> Self {
        Self {
            country_code: String::new(),
            national_prefix: String::new(),
            international_prefixes: vec!["00".into(), "011".into()],
            extension_lengths: vec![3, 4, 5],
            national_lengths: Vec::new(),
            // North American 900/976 and the European 0900 premium ranges.
            premium_prefixes: vec!["900".into(), "976".into(), "0900".into()],
            // ITU international networks (881-883 satellite/global), 979 premium, 808 shared cost.
            international_premium_prefixes: vec![
                "87".into(),
                "881".into(),
                "882".into(),
                "883".into(),
                "979".into(),
                "808".into(),
            ],
            allowed_groups: vec!["*".into()],
            user_groups: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

/// One `[[dialplan.rule]]`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `group`: the rule's group (what user policies allow).
    pub group: String,
    /// `kind`: `extension`, `national` or `international`.
    pub kind: NumberKind,
    /// `mask`: digits and `x` wildcards, matched against the classified number (national numbers
    /// without trunk prefix; international numbers starting with the country code).
    pub mask: String,
    /// `dial`: what the gateway is sent; its `x`s take the mask's wildcard digits in order.
    pub dial: String,
    /// `gateway_group`: the `[[gateway]]` group the numbers this rule allows are dialled
    /// through. Default: the group of the first enabled gateway.
    #[serde(default)]
    pub gateway_group: Option<String>,
}

/// Why a number may not be dialled (`ErrorPhoneNumberNotDialable`).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A premium-rate or special range.
    #[error("premium-rate and special numbers may not be dialled")]
    Premium,
    /// International numbers need an allowing rule.
    #[error("international numbers are not allowed")]
    International,
    /// No rule the user may use matches.
    #[error("the number does not match any dialing rule allowed for this user")]
    NoRule,
    /// Not a plausible national number.
    #[error("the number has the wrong length for this dial plan")]
    Length,
}

/// A number that may be dialled.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Resolved {
    /// What it is.
    pub kind: NumberKind,
    /// What the gateway is sent (`{number}` in the gateway URI).
    pub dial: String,
    /// The rule group that allowed it, if a rule did.
    pub group: Option<String>,
    /// The gateway group to dial it through (the rule's `gateway_group`); `None`: the default.
    pub gateway_group: Option<String>,
}

/// A validated dial plan.
#[derive(Clone, Debug, Default)]
pub struct DialPlan {
    config: DialPlanConfig,
}

impl DialPlan {
    /// Validates `config` (mask and dial wildcards must agree, digits only).
    pub fn new(config: DialPlanConfig) -> Result<Self, InvalidValue> {
        for (i, rule) in config.rules.iter().enumerate() {
            let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == 'x');
            if !ok(&rule.mask) || !ok(&rule.dial) {
                return Err(InvalidValue::new(
                    format!("dialplan.rule[{i}]"),
                    "mask and dial may contain only digits and x",
                ));
            }
            let count = |s: &str| s.chars().filter(|&c| c == 'x').count();
            if count(&rule.mask) != count(&rule.dial) {
                return Err(InvalidValue::new(
                    format!("dialplan.rule[{i}]"),
                    format!(
                        "mask {:?} and dial {:?} must have the same number of x",
                        rule.mask, rule.dial
                    ),
                ));
            }
        }
        let digits = |list: &[String]| list.iter().all(|p| p.chars().all(|c| c.is_ascii_digit()));
        if !digits(&config.premium_prefixes)
            || !digits(&config.international_premium_prefixes)
            || !digits(&config.international_prefixes)
            || !config.country_code.chars().all(|c| c.is_ascii_digit())
            || !config.national_prefix.chars().all(|c| c.is_ascii_digit())
        {
            return Err(InvalidValue::new(
                "dialplan",
                "prefixes and country_code may contain only digits",
            ));
        }
        Ok(Self { config })
    }

    /// Classifies `number` (the output of [`crate::dialstring::normalize`]) and decides whether
    /// `user` may dial it, and as what.
    pub fn resolve(&self, user: &str, number: &str) -> Result<Resolved, Refusal> {
        let (kind, canonical) = self.classify(number)?;
        match kind {
            NumberKind::National => {
                // Also look behind a leading 1: without a configured trunk prefix, "1 900 …"
                // must not slip past a "900" premium range.
                let candidates = [Some(canonical.as_str()), canonical.strip_prefix('1')];
                if candidates.into_iter().flatten().any(|n| {
                    self.config
                        .premium_prefixes
                        .iter()
                        .any(|p| n.starts_with(p.as_str()))
                }) {
                    return Err(Refusal::Premium);
                }
            }
            NumberKind::International => {
                if self
                    .config
                    .international_premium_prefixes
                    .iter()
                    .any(|p| canonical.starts_with(p.as_str()))
                {
                    return Err(Refusal::Premium);
                }
            }
            NumberKind::Extension => {}
        }
        if self.config.rules.is_empty() {
            return match kind {
                NumberKind::International => Err(Refusal::International),
                NumberKind::Extension | NumberKind::National => Ok(Resolved {
                    kind,
                    dial: canonical,
                    group: None,
                    gateway_group: None,
                }),
            };
        }
        let allowed = self
            .config
            .user_groups
            .get(user)
            .unwrap_or(&self.config.allowed_groups);
        let may_use = |group: &str| allowed.iter().any(|g| g == "*" || g == group);
        let mut matched_but_forbidden = false;
        for rule in self.config.rules.iter().filter(|r| r.kind == kind) {
            if let Some(dial) = apply(&rule.mask, &rule.dial, &canonical) {
                if may_use(&rule.group) {
                    return Ok(Resolved {
                        kind,
                        dial,
                        group: Some(rule.group.clone()),
                        gateway_group: rule.gateway_group.clone(),
                    });
                }
                matched_but_forbidden = true;
            }
        }
        Err(match kind {
            NumberKind::International if !matched_but_forbidden => Refusal::International,
            _ => Refusal::NoRule,
        })
    }

    /// `(kind, canonical digits)`: national numbers without trunk prefix, international ones
    /// starting with their country code.
    fn classify(&self, number: &str) -> Result<(NumberKind, String), Refusal> {
        let c = &self.config;
        let international = |rest: &str| -> (NumberKind, String) {
            if !c.country_code.is_empty() && rest.starts_with(c.country_code.as_str()) {
                (
                    NumberKind::National,
                    rest[c.country_code.len()..].to_owned(),
                )
            } else {
                (NumberKind::International, rest.to_owned())
            }
        };
        let (kind, canonical) = if let Some(rest) = number.strip_prefix('+') {
            international(rest)
        } else if let Some(rest) = c
            .international_prefixes
            .iter()
            .map(String::as_str)
            .chain(["00", "011"])
            .filter(|p| !p.is_empty())
            .find_map(|p| number.strip_prefix(p))
        {
            international(rest)
        } else if c.extension_lengths.contains(&number.len()) {
            return Ok((NumberKind::Extension, number.to_owned()));
        } else if !c.national_prefix.is_empty() && number.starts_with(c.national_prefix.as_str()) {
            (
                NumberKind::National,
                number[c.national_prefix.len()..].to_owned(),
            )
        } else {
            (NumberKind::National, number.to_owned())
        };
        if kind == NumberKind::National {
            let ok = if c.national_lengths.is_empty() {
                (6..=12).contains(&canonical.len())
            } else {
                c.national_lengths.contains(&canonical.len())
            };
            if !ok {
                return Err(Refusal::Length);
            }
        }
        Ok((kind, canonical))
    }
}

/// If `number` matches `mask`, `dial` with the wildcard digits filled in.
fn apply(mask: &str, dial: &str, number: &str) -> Option<String> {
    if mask.len() != number.len() {
        return None;
    }
    let mut wild = Vec::new();
    for (m, n) in mask.chars().zip(number.chars()) {
        match m {
            'x' => wild.push(n),
            d if d == n => {}
            _ => return None,
        }
    }
    let mut wild = wild.into_iter();
    Some(
        dial.chars()
            .map(|c| {
                if c == 'x' {
                    wild.next().unwrap_or('0')
                } else {
                    c
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialstring::normalize;

    /// A North American dial plan with local, national and UK rules.
    fn nanp() -> DialPlan {
        let config: DialPlanConfig = toml::from_str(
            r#"
            country_code = "1"
            national_prefix = "1"
            international_prefixes = ["011"]
            extension_lengths = [4]
            national_lengths = [10]
            allowed_groups = ["local", "extensions"]
            [user_groups]
            boss = ["local", "extensions", "national", "uk"]
            [[rule]]
            group = "extensions"
            kind = "extension"
            mask = "4xxx"
            dial = "4xxx"
            [[rule]]
            group = "local"
            kind = "national"
            mask = "425xxxxxxx"
            dial = "91425xxxxxxx"
            [[rule]]
            group = "national"
            kind = "national"
            mask = "xxxxxxxxxx"
            dial = "91xxxxxxxxxx"
            [[rule]]
            group = "uk"
            kind = "international"
            mask = "44xxxxxxxxxx"
            dial = "901144xxxxxxxxxx"
            "#,
        )
        .unwrap();
        DialPlan::new(config).unwrap()
    }

    fn resolve(plan: &DialPlan, user: &str, typed: &str) -> Result<Resolved, Refusal> {
        let n = normalize(typed).ok_or(Refusal::NoRule)?;
        plan.resolve(user, &n)
    }

    #[test]
    fn rules_classify_allow_and_rewrite() {
        let plan = nanp();
        let cases: &[(&str, &str, Result<&str, Refusal>)] = &[
            ("alice", "4711", Ok("4711")),
            ("alice", "(425) 555-0100", Ok("914255550100")),
            ("alice", "1 425 555 0100", Ok("914255550100")),
            ("alice", "+1 425 555 0100", Ok("914255550100")),
            ("alice", "tel:+1-425-555-0100", Ok("914255550100")),
            ("alice", "011 1 425 555 0100", Ok("914255550100")),
            ("alice", "206 555 0100", Err(Refusal::NoRule)),
            ("boss", "206 555 0100", Ok("912065550100")),
            ("boss", "+44 20 7946 0958", Ok("9011442079460958")),
            ("boss", "011 44 20 7946 0958", Ok("9011442079460958")),
            ("alice", "+44 20 7946 0958", Err(Refusal::NoRule)),
            ("boss", "+33 1 23 45 67 89", Err(Refusal::International)),
            ("alice", "5711", Err(Refusal::NoRule)),
            ("alice", "425 555 010", Err(Refusal::Length)),
            ("boss", "425 555 01000", Err(Refusal::Length)),
        ];
        for (user, typed, expected) in cases {
            let got = resolve(&plan, user, typed).map(|r| r.dial);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                expected.clone(),
                "{user} dials {typed:?}"
            );
        }
    }

    #[test]
    fn toll_fraud_attempts_are_refused() {
        let plan = nanp();
        // (typed, refusal for alice, refused for the boss too)
        let attempts: &[(&str, Refusal, bool)] = &[
            ("1-900-555-1212", Refusal::Premium, true),
            ("+1 900 555 1212", Refusal::Premium, true),
            ("900.555.1212", Refusal::Premium, true),
            ("tel:+1-976-555-0000", Refusal::Premium, true),
            ("011 1 900 555 1212", Refusal::Premium, true),
            // International in disguise: `00` is an international access code even where the
            // dial plan's own is 011, so it cannot pass as a national number.
            ("00 44 20 7946 0958", Refusal::NoRule, false),
            ("0011 44 20 7946 0958", Refusal::Length, true),
            // Satellite and premium international ranges, even for the boss.
            ("+882 1234 5678", Refusal::Premium, true),
            ("+881 6 1234 5678", Refusal::Premium, true),
            ("011 979 123 456 789", Refusal::Premium, true),
            ("+870 7 7212 3456", Refusal::Premium, true),
        ];
        for (typed, expected, boss_too) in attempts {
            assert_eq!(
                resolve(&plan, "alice", typed),
                Err(expected.clone()),
                "{typed:?}"
            );
            let boss = resolve(&plan, "boss", typed);
            assert_eq!(boss.is_err(), *boss_too, "boss dials {typed:?}: {boss:?}");
        }
        // Letters, star codes, overlong strings never get past normalisation.
        for typed in [
            "1-900-CALL-NOW",
            "*67 425 555 0100",
            "#31#4255550100",
            "1234567890123456789012345",
            "+",
            "sip:+14255550100@x",
        ] {
            assert!(normalize(typed).is_none(), "{typed:?} normalised");
        }
    }

    #[test]
    fn without_rules_national_and_extensions_pass_international_does_not() {
        let plan = DialPlan::new(DialPlanConfig::default()).unwrap();
        assert_eq!(
            plan.resolve("u", "4711").unwrap().kind,
            NumberKind::Extension
        );
        assert_eq!(plan.resolve("u", "2005551234").unwrap().dial, "2005551234");
        assert_eq!(
            plan.resolve("u", "+442079460958"),
            Err(Refusal::International)
        );
        assert_eq!(
            plan.resolve("u", "00442079460958"),
            Err(Refusal::International)
        );
        assert_eq!(
            plan.resolve("u", "0114420794609"),
            Err(Refusal::International)
        );
        assert_eq!(plan.resolve("u", "9005551212"), Err(Refusal::Premium));
        assert_eq!(plan.resolve("u", "19005551212"), Err(Refusal::Premium));
        assert_eq!(plan.resolve("u", "09001234567"), Err(Refusal::Premium));
        // A Canadian 905 area code is not a premium number.
        assert_eq!(
            plan.resolve("u", "19055551234").unwrap().dial,
            "19055551234"
        );
        // With a European trunk prefix, 0900 numbers are premium too.
        let europe = DialPlan::new(DialPlanConfig {
            country_code: "49".into(),
            national_prefix: "0".into(),
            ..DialPlanConfig::default()
        })
        .unwrap();
        assert_eq!(europe.resolve("u", "0900123456"), Err(Refusal::Premium));
        assert_eq!(europe.resolve("u", "+49900123456"), Err(Refusal::Premium));
        assert_eq!(europe.resolve("u", "+4930123456").unwrap().dial, "30123456");
    }

    #[test]
    fn invalid_rules_are_refused_by_name() {
        for (mask, dial) in [("425xxx", "91425xx"), ("42a", "42a"), ("", "1")] {
            let config = DialPlanConfig {
                rules: vec![RuleConfig {
                    group: "g".into(),
                    kind: NumberKind::National,
                    mask: mask.into(),
                    dial: dial.into(),
                    gateway_group: None,
                }],
                ..DialPlanConfig::default()
            };
            let err = DialPlan::new(config).unwrap_err().to_string();
            assert!(err.contains("dialplan.rule[0]"), "{err}");
        }
    }
}
