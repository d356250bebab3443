//! The access list and grant policy shipped in `deploy/` parse and say what their comments say.

use lapse_core::GrantKind;
use lapse_core::access_list::parse_file;

#[test]
fn shipped_example_list_is_valid() {
    let text = include_str!("../../../deploy/access-lists.d/prod-db-oncall.toml");
    let lists = parse_file("prod-db-oncall.toml", text).expect("the shipped example parses");
    assert_eq!(lists.len(), 1);
    let l = &lists[0];
    assert_eq!(l.name, "prod-db-oncall");
    assert_eq!(l.target.kind, GrantKind::EphemeralGroup);
    assert_eq!(l.target.resources, vec!["prod-db".to_owned()]);
}

#[test]
fn shipped_example_grant_policy_is_valid() {
    use lapse_core::grant_policy;
    let text = include_str!("../../../deploy/grant-policies.d/deploy-bot.toml");
    let cap = chrono::Duration::hours(24);
    let policies =
        grant_policy::parse_file("deploy-bot.toml", text, cap).expect("the shipped example parses");
    assert_eq!(policies.len(), 1);
    let p = &policies[0];
    assert_eq!(p.name, "deploy-bot-staging");
    assert_eq!(p.tokens, vec!["deploy-bot".to_owned()]);
    assert_eq!(p.kinds, vec![GrantKind::GroupAccess]);
    assert_eq!(p.targets, vec!["staging-db".to_owned()]);
    assert_eq!(p.max_duration, chrono::Duration::hours(2));
}
