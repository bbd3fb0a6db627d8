use std::collections::HashMap;

use super::*;

fn env(vars: &[(&str, &str)]) -> Env {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Env::from_lookup(|name| vars.get(name).cloned())
}

#[test]
fn standard_sampler_values_choose_the_head_rule() {
    // (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, parent-based, ratio);
    // the config's ratio is 0.1.
    let table: &[(Option<&str>, Option<&str>, bool, f64)] = &[
        (None, None, true, 0.1),
        (None, Some("0.5"), true, 0.5),
        (Some("always_on"), None, false, 1.0),
        (Some("always_on"), Some("0.5"), false, 1.0),
        (Some("always_off"), None, false, 0.0),
        (Some("traceidratio"), Some("0.25"), false, 0.25),
        (Some("traceidratio"), None, false, 0.1),
        (Some("parentbased_always_on"), None, true, 1.0),
        (Some("parentbased_always_off"), Some("0.5"), true, 0.0),
        (Some("parentbased_traceidratio"), Some("0.75"), true, 0.75),
        (Some("ParentBased_TraceIdRatio"), None, true, 0.1),
        (Some("traceidratio"), Some("7"), false, 1.0),
        (Some("traceidratio"), Some("not a number"), false, 0.1),
        // Unknown: ignored (with a warning), the default rule applies.
        (Some("jaeger_remote"), Some("0.5"), true, 0.5),
        (Some("  "), None, true, 0.1),
    ];
    for &(sampler, arg, parent_based, ratio) in table {
        let mut vars = Vec::new();
        if let Some(sampler) = sampler {
            vars.push(("OTEL_TRACES_SAMPLER", sampler));
        }
        if let Some(arg) = arg {
            vars.push(("OTEL_TRACES_SAMPLER_ARG", arg));
        }
        let sampling = env(&vars).sampling(0.1);
        assert_eq!(
            sampling,
            Sampling {
                parent_based,
                ratio
            },
            "{sampler:?} {arg:?}"
        );
    }
}

#[test]
fn an_unknown_sampler_is_kept_for_the_warning() {
    let read = env(&[("OTEL_TRACES_SAMPLER", "jaeger_remote")]);
    assert_eq!(read.sampler, None);
    assert_eq!(read.unknown_sampler.as_deref(), Some("jaeger_remote"));
    let read = env(&[("OTEL_TRACES_SAMPLER", "always_off")]);
    assert_eq!(read.sampler, Some(SamplerName::AlwaysOff));
    assert_eq!(read.unknown_sampler, None);
}

#[test]
fn other_variables_are_read_through_the_lookup() {
    let read = env(&[
        ("OTEL_SDK_DISABLED", "TRUE"),
        ("OTEL_SERVICE_NAME", "edge"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
    ]);
    assert!(read.disabled);
    assert_eq!(read.service_name.as_deref(), Some("edge"));
    assert!(read.traces_off);
    assert!(!read.metrics_off);
    assert_eq!(read.timeout, Some(Duration::from_millis(250)));
}
