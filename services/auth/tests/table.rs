//! Every RPC of the contract × every role × every purpose of use, through the policy
//! the handlers ask: the answer is derived here from first principles (the role the
//! RPC needs, the purposes granted, the break-the-glass rules), so a change to the
//! table or to the policy that widens or narrows access shows up as a failing row.
//! An RPC added to the contract without a table entry fails for every row.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] fns, unwrap

use tessera_auth::caller::AuthMethod;
use tessera_auth::policy::PURPOSES;
use tessera_auth::{Denied, PermissionTable, Policy, PolicyConfig, Role, methods};

const POLICY: &str = r#"
callers:
  - {id: reader, match: {san: "spiffe://t/reader"}, roles: [reader], purposes: [TREAT, PATRQT], break_glass: true}
  - {id: steward, match: {san: "spiffe://t/steward"}, roles: [steward], purposes: [HOPERAT]}
  - {id: admin, match: {san: "spiffe://t/admin"}, roles: [admin], purposes: [HSYSADMIN, TREAT]}
"#;

/// What each RPC needs, written out independently of the crate's own list.
fn needed(rpc: &str) -> Role {
    let name = rpc.rsplit('/').next().unwrap();
    if rpc.starts_with("/tessera.v1.SourceAdapterService/") {
        return Role::Admin;
    }
    match name {
        "UpsertSourceRecord"
        | "ResolveReviewItem"
        | "LinkSourceRecord"
        | "MergeMasters"
        | "UnmergeSourceRecord" => Role::Steward,
        _ => Role::Reader,
    }
}

#[test]
fn every_rpc_role_and_purpose_gets_the_answer_the_rules_give() {
    let config: PolicyConfig = serde_yaml_ng::from_str(POLICY).unwrap();
    let policy = Policy::new(&config, PermissionTable::for_contract(false).unwrap()).unwrap();
    let rpcs = methods(tessera_proto::FILE_DESCRIPTOR_SET).unwrap();
    assert!(rpcs.len() >= 18, "the contract's RPCs: {rpcs:?}");
    let callers = [
        ("reader", Role::Reader, &["TREAT", "PATRQT"][..], true),
        ("steward", Role::Steward, &["HOPERAT"][..], false),
        ("admin", Role::Admin, &["HSYSADMIN", "TREAT"][..], false),
    ];
    let mut rows = 0;
    for rpc in &rpcs {
        for (name, role, purposes, glass) in callers {
            let grant = policy
                .grant_for_san(&format!("spiffe://t/{name}"))
                .unwrap_or_else(|| panic!("{name} is a configured caller"));
            for purpose in PURPOSES {
                let expected = if role < needed(rpc) {
                    Err(Denied::RoleTooLow)
                } else if *purpose == "ETREAT" {
                    if glass {
                        Ok(())
                    } else {
                        Err(Denied::BreakGlassNotAllowed)
                    }
                } else if purposes.contains(purpose) {
                    Ok(())
                } else {
                    Err(Denied::PurposeNotGranted)
                };
                let got = policy
                    .authorize(
                        Some(&grant),
                        rpc,
                        purpose,
                        Some("unconscious on arrival"),
                        0,
                    )
                    .map(|_| ());
                assert_eq!(got, expected, "{rpc} as {name} for {purpose}");
                rows += 1;
            }
        }
    }
    assert_eq!(rows, rpcs.len() * 3 * PURPOSES.len());
    // Without a grant (the request did not pass the auth layer): refused, always.
    for rpc in &rpcs {
        assert_eq!(
            policy.authorize(None, rpc, "TREAT", None, 0).map(|_| ()),
            Err(Denied::CallerUnknown)
        );
    }
}

/// The policy's grant for a certificate SAN, as the auth layer finds it.
trait BySan {
    fn grant_for_san(&self, san: &str) -> Option<tessera_auth::Grant>;
}

impl BySan for Policy {
    fn grant_for_san(&self, san: &str) -> Option<tessera_auth::Grant> {
        self.grant_for(&AuthMethod::Mtls { san: san.into() })
            .map(|g| (**g).clone())
    }
}
