//! proptest strategies for TenantControlPlane specs, and the API server's admission of them
//! (schema defaults, OpenAPI bounds, CEL rules), for the property-based tests of this crate and
//! of the operator (which includes this file with `#[path]`; the including module brings
//! `TenantControlPlane`, `SUPPORTED_MINORS` and `DEFAULT_SERVICE_CIDR`
//! into scope).
//!
//! The specs are JSON and always well-typed (the API server checks types before anything else).
//! `spec(false)` keeps every field within what the schema allows, with adversarial contents where
//! the schema allows them (unicode, control characters, strings at their maxLength); most such
//! specs pass the CEL rules too. `spec(true)` also breaks the bounds and the rules: garbage
//! versions, huge and negative numbers, odd CIDRs, over-long strings.

// Each crate uses a part of what is here.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use kube::CustomResourceExt as _;
use kube::core::cel::{CompiledSchema, ValidationErrors, compile_schema, validate_compiled};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

use super::{DEFAULT_SERVICE_CIDR, SUPPORTED_MINORS, TenantControlPlane};

/// `cases` cases (or `$PROPTEST_CASES`), and no regression files written into the tree: a
/// failure prints its minimal input, which becomes a plain unit test.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        failure_persistence: None,
        // Properties over admitted specs discard the rest; room for that with many cases.
        max_global_rejects: cases.saturating_mul(2).max(1024),
        ..Config::with_cases(cases)
    }
}

// ---------------------------------------------------------------------------------------------
// strings and numbers
// ---------------------------------------------------------------------------------------------

/// A string of `min..=max` characters (maxLength counts characters, not bytes) with adversarial
/// contents: printable ASCII, any unicode, control and bidi characters, quotes and separators, and
/// runs of one-byte and multi-byte characters at the limit. `wild` also gives the empty string
/// and strings just over `max`.
pub fn text(min: usize, max: usize, wild: bool) -> BoxedStrategy<String> {
    let (lo, hi) = if wild { (0, max + 2) } else { (min, max) };
    let short = hi.min(lo + 24);
    let regex = |class: &str| {
        proptest::string::string_regex(&format!("{class}{{{lo},{short}}}"))
            .unwrap_or_else(|e| panic!("{class}: {e}"))
    };
    prop_oneof![
        2 => regex("[ -~]"),
        2 => regex("\\PC"),
        1 => regex("[\\x00-\\x1f\\x7f\\u{202e}\\u{feff}é水🦀 '\"\\\\/.:%$*=-]"),
        1 => (
            hi.saturating_sub(2).max(lo)..=hi,
            prop::sample::select(vec!["a", "0", "é", "水", "🦀", "-", " "]),
        )
            .prop_map(|(n, c)| c.repeat(n)),
    ]
    .boxed()
}

/// An integer in `min..=max`; `wild` also gives the bounds' neighbours and any i32.
pub fn int(min: i64, max: i64, wild: bool) -> BoxedStrategy<i64> {
    if !wild {
        return prop_oneof![Just(min), Just(max), min..=max].boxed();
    }
    prop_oneof![
        3 => (min - 2)..=(max + 2),
        1 => any::<i32>().prop_map(i64::from),
        1 => prop::sample::select(vec![0, i64::from(i32::MIN), i64::from(i32::MAX), -1]),
    ]
    .boxed()
}

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.6, s)
}

/// A JSON object of the fields that are set.
pub fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v?)))
            .collect::<Map<_, _>>(),
    )
}

// ---------------------------------------------------------------------------------------------
// fields
// ---------------------------------------------------------------------------------------------

pub fn version(wild: bool) -> BoxedStrategy<String> {
    let valid = (
        prop::sample::select(SUPPORTED_MINORS.to_vec()),
        0u32..10_000,
    )
        .prop_map(|(minor, patch)| format!("1.{minor}.{patch}"));
    if !wild {
        return valid.boxed();
    }
    prop_oneof![
        3 => valid,
        2 => (0u64..3, 0u64..400, any::<u64>()).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        2 => "[v ]?1[.]3[4-7][.]0?[0-9]{0,5}( |-rc[.]1|[+]build|[.]0)?",
        1 => Just("1.36.99999999999999999999999".to_owned()),
        2 => text(0, 16, true),
    ]
    .boxed()
}

fn ipv4_cidr(addr: u32, prefix: u32, canonical: bool) -> String {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    let addr = if canonical { addr & mask } else { addr };
    format!("{}/{prefix}", Ipv4Addr::from(addr))
}

fn ipv6_cidr(addr: u128, prefix: u32, canonical: bool) -> String {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    let addr = if canonical { addr & mask } else { addr };
    format!("{}/{prefix}", Ipv6Addr::from(addr))
}

/// A CIDR. Valid ones are in network form (no host bits), from a list of usual and edge-case
/// networks (/0, /31, /32, IPv4-mapped) or random.
pub fn cidr(wild: bool) -> BoxedStrategy<String> {
    let valid = prop_oneof![
        3 => prop::sample::select(vec![
            "10.96.0.0/16", "10.244.0.0/16", "172.20.0.0/16", "10.0.0.0/8", "10.96.0.0/12",
            "192.168.0.0/24", "10.96.0.0/30", "10.96.0.0/31", "10.96.0.0/32", "0.0.0.0/0",
            "fd00:10:96::/112", "fd00:10:244::/56", "::/0", "fd00::/127", "::ffff:10.96.0.0/112",
        ])
        .prop_map(str::to_owned),
        2 => (any::<u32>(), 0u32..=32).prop_map(|(a, p)| ipv4_cidr(a, p, true)),
        1 => (any::<u128>(), 0u32..=128).prop_map(|(a, p)| ipv6_cidr(a, p, true)),
    ];
    if !wild {
        return valid.boxed();
    }
    prop_oneof![
        3 => valid,
        1 => (any::<u32>(), 0u32..=32).prop_map(|(a, p)| ipv4_cidr(a, p, false)),
        1 => (any::<u128>(), 0u32..=128).prop_map(|(a, p)| ipv6_cidr(a, p, false)),
        2 => "(0?[0-9]{1,3}[.]){3}[0-9]{1,3}(/-?[0-9]{1,4})?( )?",
        1 => "[0-9a-f:]{2,20}(/[0-9]{1,3})?(%eth0)?",
        1 => text(0, 43, true),
    ]
    .boxed()
}

pub fn ip(wild: bool) -> BoxedStrategy<String> {
    let valid = prop_oneof![
        2 => prop::sample::select(vec![
            "10.96.0.10", "172.20.0.10", "10.97.0.10", "fd00:10:96::a", "::ffff:10.96.0.10",
            "0.0.0.0", "255.255.255.255", "::",
        ])
        .prop_map(str::to_owned),
        2 => any::<u32>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        1 => any::<u128>().prop_map(|a| Ipv6Addr::from(a).to_string()),
    ];
    if !wild {
        return valid.boxed();
    }
    prop_oneof![
        3 => valid,
        1 => prop::sample::select(vec!["10.96.0.10/32", "010.96.0.10", "fe80::1%eth0", "1.2.3"])
            .prop_map(str::to_owned),
        1 => text(0, 45, true),
    ]
    .boxed()
}

/// A DNS-1123 subdomain of at most `max` characters, some with labels or totals at their limits
/// (63 and 253); `wild` adds uppercase, underscores and garbage.
pub fn domain(max: usize, wild: bool) -> BoxedStrategy<String> {
    let valid = prop_oneof![
        3 => "[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?([.][a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?){0,3}",
        1 => (60usize..=66).prop_map(|n| format!("{}.local", "a".repeat(n))),
        1 => (1usize..=4).prop_map(|n| vec!["a".repeat(62); n].join(".")),
    ]
    .prop_map(move |d: String| d.chars().take(max).collect::<String>())
    .prop_filter("ends in a letter or digit", |d| {
        d.ends_with(|c: char| c.is_ascii_alphanumeric())
    });
    if !wild {
        return valid.boxed();
    }
    prop_oneof![
        3 => valid,
        1 => "[A-Za-z0-9_.-]{1,12}",
        1 => text(1, max, true),
    ]
    .boxed()
}

pub fn ttl(wild: bool) -> BoxedStrategy<String> {
    // 15m to 10080m, 1h to 168h.
    let valid = "(1[5-9]|[2-9][0-9]|[1-9][0-9]{2}|[1-9][0-9]{3}|100[0-7][0-9]|10080)m\
                 |([1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h";
    if !wild {
        return valid.boxed();
    }
    prop_oneof![
        3 => valid,
        3 => "[1-9][0-9]{0,4}[hm]",
        2 => "[0-9]{1,6}[hmsdH]",
        1 => "[-+0-9.]{1,5}[hm]",
        1 => "[0-9]{0,4}[hm]?[é水🦀]",
        1 => text(0, 6, true),
    ]
    .boxed()
}

/// A storage size: a positive quantity (string or integer), or (`wild`) zero, negative, absurdly
/// large, malformed.
pub fn size(wild: bool) -> BoxedStrategy<Value> {
    let valid = prop_oneof![
        3 => "[1-9][0-9]{0,3}(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T)?".prop_map(Value::from),
        1 => (1i64..=i64::MAX).prop_map(Value::from),
    ];
    if !wild {
        return valid.boxed();
    }
    prop_oneof![
        3 => valid,
        2 => "[-+]?[0-9]{1,3}([.][0-9]{0,4})?(Gi|e3|E-2|m)?".prop_map(Value::from),
        // Beyond ~1e38 kube-cel 0.8 overflows an i128 comparing quantities (a panic in a
        // debug build, functions/quantity.rs `scale_mantissa`); the API server caps a quantity at
        // 2^63-1 instead. Large, but not that large, here.
        1 => "9{19,20}(Ei|E)?".prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => text(0, 20, true).prop_map(Value::from),
    ]
    .boxed()
}

/// Resource requirements: the schema bounds neither the names nor the quantities (any string).
fn resources() -> BoxedStrategy<Value> {
    let list = prop::collection::btree_map(
        prop_oneof![
            Just("cpu".to_owned()),
            Just("memory".to_owned()),
            "[a-z./-]{1,12}"
        ],
        prop_oneof![size(true), text(0, 12, false).prop_map(Value::from)],
        0..3,
    );
    (opt(list.clone()), opt(list))
        .prop_map(|(requests, limits)| {
            object(vec![
                ("requests", requests.map(|m| json!(m))),
                ("limits", limits.map(|m| json!(m))),
            ])
        })
        .boxed()
}

fn component(wild: bool) -> BoxedStrategy<Value> {
    // Neither the flag names nor their values are bounded.
    let args = prop::collection::btree_map(text(0, 24, false), text(0, 24, false), 0..4);
    (opt(int(1, 5, wild)), opt(resources()), opt(args))
        .prop_map(|(replicas, resources, args)| {
            object(vec![
                ("replicas", replicas.map(Value::from)),
                ("resources", resources),
                ("extraArgs", args.map(|a| json!(a))),
            ])
        })
        .boxed()
}

fn service(wild: bool) -> BoxedStrategy<Value> {
    let known = prop::sample::select(vec!["ClusterIP", "NodePort", "LoadBalancer"]);
    let type_ = if wild {
        prop_oneof![4 => known.prop_map(str::to_owned), 1 => text(0, 12, true)].boxed()
    } else {
        known.prop_map(str::to_owned).boxed()
    };
    (
        opt(type_),
        opt(int(1, 65_535, wild)),
        opt(int(30_000, 32_767, wild)),
    )
        .prop_map(move |(type_, port, node_port)| {
            // A node port only with type NodePort, unless the rules are to be broken.
            let node_port = node_port.filter(|_| wild || type_.as_deref() == Some("NodePort"));
            object(vec![
                ("type", type_.map(Value::from)),
                ("port", port.map(Value::from)),
                ("nodePort", node_port.map(Value::from)),
            ])
        })
        .boxed()
}

fn control_plane(wild: bool) -> BoxedStrategy<Value> {
    // Any string of 1 to 253 characters is a SAN to the schema.
    let san = prop_oneof![domain(253, false), ip(false), text(1, 253, wild)];
    let sans = prop::collection::vec(san, 0..=if wild { 34 } else { 32 });
    (
        opt(component(wild)),
        opt(component(wild)),
        opt(component(wild)),
        opt(service(wild)),
        opt(sans),
    )
        .prop_map(|(api, cm, scheduler, service, sans)| {
            object(vec![
                ("apiServer", api),
                ("controllerManager", cm),
                ("scheduler", scheduler),
                ("service", service),
                ("certSANs", sans.map(|s| json!(s))),
            ])
        })
        .boxed()
}

fn storage(wild: bool) -> BoxedStrategy<Value> {
    (opt(size(wild)), opt(text(0, 253, wild)))
        .prop_map(|(size, class)| {
            object(vec![
                ("size", size),
                ("storageClassName", class.map(Value::from)),
            ])
        })
        .boxed()
}

fn etcd(wild: bool) -> BoxedStrategy<Value> {
    let restore_from = (
        prop_oneof![domain(63, false), text(1, 63, wild)],
        prop_oneof!["[a-z]{1,8}-2026[0-9]{4}-[0-9]{6}[.]db", text(1, 253, wild)],
    )
        .prop_map(|(tenant, snapshot)| json!({"tenant": tenant, "snapshot": snapshot}));
    let replicas = if wild {
        int(1, 5, true)
    } else {
        prop::sample::select(vec![1i64, 3, 5]).boxed()
    };
    let managed = (
        opt(replicas),
        opt(storage(wild)),
        opt(resources()),
        opt(restore_from),
    )
        .prop_map(|(replicas, storage, resources, restore_from)| {
            object(vec![
                ("replicas", replicas.map(Value::from)),
                ("storage", storage),
                ("resources", resources),
                ("restoreFrom", restore_from),
            ])
        });
    // `etcd: {}` (no mode) now and then.
    let managed = if wild {
        prop::option::weighted(0.9, managed).boxed()
    } else {
        managed.prop_map(Some).boxed()
    };
    managed
        .prop_map(|managed| object(vec![("managed", managed)]))
        .boxed()
}

fn network(wild: bool) -> BoxedStrategy<Value> {
    // dnsServiceIP: unset, one inside serviceCIDR (when that parses), or (`wild`) any address.
    let inside_offset = any::<u32>().prop_map(|k| Some(format!("+{k}")));
    let dns = if wild {
        prop_oneof![Just(None), ip(true).prop_map(Some), inside_offset].boxed()
    } else {
        prop_oneof![Just(None), inside_offset].boxed()
    };
    (
        opt(cidr(wild)),
        opt(cidr(wild)),
        dns,
        opt(domain(253, wild)),
    )
        .prop_map(|(service, pod, dns, domain)| {
            let dns = dns.map(|d| match d.strip_prefix('+') {
                Some(offset) => inside(
                    service.as_deref().unwrap_or(DEFAULT_SERVICE_CIDR),
                    offset.parse().unwrap_or(0),
                ),
                None => d,
            });
            object(vec![
                ("serviceCIDR", service.map(Value::from)),
                ("podCIDR", pod.map(Value::from)),
                ("dnsServiceIP", dns.map(Value::from)),
                ("clusterDomain", domain.map(Value::from)),
            ])
        })
        .boxed()
}

/// The `offset`th address (modulo its size) of `cidr`, or `cidr` itself when it does not parse.
fn inside(cidr: &str, offset: u32) -> String {
    let Some((addr, prefix)) = cidr.split_once('/') else {
        return cidr.to_owned();
    };
    let (Ok(addr), Ok(prefix)) = (addr.parse::<IpAddr>(), prefix.parse::<u32>()) else {
        return cidr.to_owned();
    };
    match addr {
        IpAddr::V4(v4) if prefix <= 32 => {
            let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
            Ipv4Addr::from((u32::from(v4) & !host) | (offset & host)).to_string()
        }
        IpAddr::V6(v6) if prefix <= 128 => {
            let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
            Ipv6Addr::from((u128::from(v6) & !host) | (u128::from(offset) & host)).to_string()
        }
        _ => cidr.to_owned(),
    }
}

/// A cron expression: five fields of numbers, ranges, steps and lists (some out of range), the
/// `@` forms, seconds and years, expressions that never match, and garbage.
pub fn cron() -> BoxedStrategy<String> {
    let field = prop_oneof![
        Just("*".to_owned()),
        "[0-9]{1,2}",
        "[*]/[0-9]{1,3}",
        "[0-9]{1,2}-[0-9]{1,2}(/[0-9])?",
        "[0-9]{1,2}(,[0-9]{1,2}){1,3}",
        "[0-9]{1,2}[LW#?]|L|[?]|MON-FRI|JAN|SUN#2",
        "[0-9]{10,20}",
    ];
    prop_oneof![
        4 => prop::collection::vec(field, 5..=7).prop_map(|f| f.join(" ")),
        1 => prop::sample::select(vec![
            "@daily", "@hourly", "@yearly", "@reboot", "0 0 30 2 *", "0 0 31 4 *",
            "0 0 29 2 *", "* * * * *", "59 23 31 12 *", "0 2 * * 0", "30 2 * 3 0",
        ])
        .prop_map(str::to_owned),
        1 => text(1, 100, true),
    ]
    .boxed()
}

/// An IANA zone name: usual ones, ones with odd offsets and DST rules, unknown ones, paths and
/// garbage.
pub fn zone() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
            "Pacific/Chatham", "America/St_Johns", "Antarctica/Troll", "Etc/GMT+12", "Etc/GMT-14",
            "Pacific/Kiritimati", "Africa/Casablanca", "Asia/Tehran", "America/Santiago",
            "Europe/Dublin", "Pacific/Apia", "utc", "Mars/Olympus", "../../../etc/passwd",
            "/etc/localtime", "Europe/Berlin\u{0}", "Europe/",
        ])
        .prop_map(str::to_owned),
        1 => text(1, 64, true),
    ]
    .boxed()
}

fn hibernation(wild: bool) -> BoxedStrategy<Value> {
    let schedule =
        (opt(cron()), opt(cron()), opt(zone())).prop_map(move |(start, end, location)| {
            // A schedule needs a start or an end, unless the rules are to be broken.
            let start = if wild || end.is_some() {
                start
            } else {
                start.or_else(|| Some("0 20 * * *".to_owned()))
            };
            object(vec![
                ("start", start.map(Value::from)),
                ("end", end.map(Value::from)),
                ("location", location.map(Value::from)),
            ])
        });
    let max = if wild { 18 } else { 16 };
    (
        opt(any::<bool>()),
        opt(prop::collection::vec(schedule, 0..=max)),
    )
        .prop_map(|(enabled, schedules)| {
            object(vec![
                ("enabled", enabled.map(Value::from)),
                ("schedules", schedules.map(Value::from)),
            ])
        })
        .boxed()
}

fn backup(wild: bool) -> BoxedStrategy<Value> {
    (
        opt(cron()),
        opt(zone()),
        opt(int(1, 1000, wild)),
        opt(storage(wild)),
    )
        .prop_map(|(schedule, location, retain, storage)| {
            object(vec![
                ("schedule", schedule.map(Value::from)),
                ("location", location.map(Value::from)),
                ("retain", retain.map(Value::from)),
                ("storage", storage),
            ])
        })
        .boxed()
}

/// A spec as a user could `kubectl apply` it: every field optional except `version`.
pub fn spec(wild: bool) -> BoxedStrategy<Value> {
    let profiles = prop::sample::select(vec!["Standard", "Small"]).prop_map(str::to_owned);
    let profile = if wild {
        prop_oneof![4 => profiles, 1 => text(0, 8, true)].boxed()
    } else {
        profiles.boxed()
    };
    let addon = || opt(any::<bool>()).prop_map(|e| object(vec![("enabled", e.map(Value::from))]));
    let addons = (opt(addon()), opt(addon()))
        .prop_map(|(dns, proxy)| object(vec![("coreDNS", dns), ("kubeProxy", proxy)]));
    let nodes =
        opt(ttl(wild)).prop_map(|t| object(vec![("bootstrapTokenTTL", t.map(Value::from))]));
    let registry = prop_oneof![domain(255, false), text(1, 255, wild)];
    (
        (
            version(wild),
            opt(control_plane(wild)),
            opt(etcd(wild)),
            opt(network(wild)),
        ),
        (opt(nodes), opt(addons), opt(profile)),
        (opt(hibernation(wild)), opt(backup(wild)), opt(registry)),
    )
        .prop_map(
            |(
                (version, control_plane, etcd, network),
                (nodes, addons, profile),
                (hibernation, backup, registry),
            )| {
                object(vec![
                    ("version", Some(Value::from(version))),
                    ("controlPlane", control_plane),
                    ("etcd", etcd),
                    ("network", network),
                    ("nodes", nodes),
                    ("addons", addons),
                    ("profile", profile.map(Value::from)),
                    ("hibernation", hibernation),
                    ("backup", backup),
                    ("registry", registry.map(Value::from)),
                ])
            },
        )
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// admission
// ---------------------------------------------------------------------------------------------

/// The OpenAPI schema of `spec`, as installed.
pub fn spec_schema() -> &'static Value {
    static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
        let crd = serde_json::to_value(TenantControlPlane::crd()).unwrap_or_default();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    });
    &SCHEMA
}

/// What the OpenAPI part of the schema (kube-cel evaluates only the CEL rules) says of `value`:
/// types, string lengths in characters, numeric ranges, enums, list sizes, required fields.
pub fn within_openapi_bounds(schema: &Value, value: &Value) -> bool {
    let typed = match (schema["type"].as_str(), value) {
        _ if schema["x-kubernetes-int-or-string"] == json!(true) => {
            value.is_string() || value.is_i64() || value.is_u64()
        }
        (Some("string"), Value::String(_))
        | (Some("integer"), Value::Number(_))
        | (Some("boolean"), Value::Bool(_))
        | (Some("array"), Value::Array(_))
        | (Some("object"), Value::Object(_))
        | (None, _) => true,
        (Some(_), Value::Null) => schema["nullable"] == json!(true),
        _ => false,
    };
    if !typed
        || schema["enum"]
            .as_array()
            .is_some_and(|allowed| !allowed.contains(value))
    {
        return false;
    }
    let within = |key: &str, n: f64, above: bool| {
        schema[key]
            .as_f64()
            .is_none_or(|bound| if above { n >= bound } else { n <= bound })
    };
    #[allow(clippy::cast_precision_loss)] // lengths far below 2^52
    let count = |n: usize| n as f64;
    match value {
        Value::String(s) => {
            let chars = count(s.chars().count());
            within("maxLength", chars, false) && within("minLength", chars, true)
        }
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(f64::NAN);
            within("maximum", n, false) && within("minimum", n, true)
        }
        Value::Array(items) => {
            within("maxItems", count(items.len()), false)
                && items
                    .iter()
                    .all(|item| within_openapi_bounds(&schema["items"], item))
        }
        Value::Object(fields) => {
            let required = schema["required"].as_array().into_iter().flatten();
            required
                .filter_map(Value::as_str)
                .all(|r| fields.contains_key(r))
                && fields.iter().all(|(k, v)| {
                    match (&schema["properties"][k], &schema["additionalProperties"]) {
                        (Value::Null, Value::Object(_)) => {
                            within_openapi_bounds(&schema["additionalProperties"], v)
                        }
                        // An unknown field: the API server would prune it; none is generated.
                        (Value::Null, _) => false,
                        (property, _) => within_openapi_bounds(property, v),
                    }
                })
        }
        _ => true,
    }
}

thread_local! {
    /// The spec's schema with its CEL rules compiled once per test thread (`validate_cel`
    /// generates and compiles it on every call, some 20 ms in a debug build).
    static COMPILED: CompiledSchema = compile_schema(spec_schema());
}

/// Every CEL rule of the spec, with the schema defaults applied first: `validate_cel` without
/// compiling the rules again each time (a property checks that the two agree).
pub fn validate(spec: &Value, old: Option<&Value>) -> Result<(), ValidationErrors> {
    COMPILED.with(|compiled| validate_compiled(compiled, spec, old))
}

/// The API server's admission of a new object's spec: the schema defaults, then the OpenAPI
/// bounds and every CEL rule. The spec as stored, when admitted.
pub fn admit(spec: &Value) -> Option<Value> {
    let schema = spec_schema();
    let defaulted = kube::core::cel::apply_defaults(schema, spec);
    let admitted = within_openapi_bounds(schema, &defaulted) && validate(spec, None).is_ok();
    admitted.then_some(defaulted)
}
