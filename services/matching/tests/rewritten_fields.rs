//! Duplicates with a rewritten field link, and the rules that let them do not
//! join different people: a mistyped national ID vouches only when the rest of
//! the record agrees, a cluster takes a record that rewrote its birth date or
//! ID only when another member sides with it, and deduplicated sources pair
//! one-to-one.

use tessera_matching::{
    Address, Conflict, Demographics, MatchConfig, Model, explain, link_batch, link_batch_sources,
};

#[derive(Clone, Copy)]
struct P<'a> {
    given: &'a str,
    family: &'a str,
    dob: &'a str,
    street: &'a str,
    city: &'a str,
    zip: &'a str,
    ssn: &'a str,
}

/// An Australian-style record as FEBRL generates them: no phone, email or sex.
const BASE: P<'static> = P {
    given: "harriet",
    family: "horsley",
    dob: "1971-09-26",
    street: "12 woinarski place white lodge",
    city: "mulgrave east",
    zip: "3280",
    ssn: "4215401",
};

fn demo(p: &P<'_>) -> Demographics {
    Demographics {
        given_names: p.given.split_whitespace().map(str::to_owned).collect(),
        family_name: p.family.to_owned(),
        birth_date: p.dob.to_owned(),
        addresses: vec![Address {
            lines: vec![p.street.to_owned()],
            city: p.city.to_owned(),
            state: "wa".to_owned(),
            postal_code: p.zip.to_owned(),
            country: "AU".to_owned(),
        }],
        national_id: p.ssn.to_owned(),
        ..Demographics::default()
    }
}

fn conflict(a: &P<'_>, b: &P<'_>) -> Option<Conflict> {
    explain(&Model::builtin(), &demo(a), &demo(b)).conflict
}

fn clusters(rows: &[P<'_>]) -> Vec<u32> {
    let rows: Vec<Demographics> = rows.iter().map(demo).collect();
    link_batch(&rows, &Model::builtin(), &MatchConfig::default())
}

#[test]
fn a_last_digit_typo_in_the_national_id_vouches_when_name_and_birth_date_agree() {
    let typo = P {
        ssn: "4215402",
        ..BASE
    };
    assert_eq!(conflict(&BASE, &typo), None);
    let c = clusters(&[BASE, typo]);
    assert_eq!(c[0], c[1], "one person, one typo in the ID");
    // The same consecutive IDs on a different given name are twins.
    let twin = P {
        given: "olivia",
        ..typo
    };
    assert!(conflict(&BASE, &twin).is_some());
    let c = clusters(&[BASE, twin]);
    assert_ne!(c[0], c[1], "twins with consecutive IDs");
    // Numbers one apart across a ten (..19 / ..20) are just as sequential.
    let (a, b) = (
        P {
            ssn: "4215419",
            ..BASE
        },
        P {
            given: "olivia",
            ssn: "4215420",
            ..BASE
        },
    );
    assert!(conflict(&a, &b).is_some());
    // A junior with his father's name and the next number stays apart.
    let junior = P {
        dob: "1998-02-11",
        ssn: "4215402",
        ..BASE
    };
    assert!(conflict(&BASE, &junior).is_some());
}

#[test]
fn a_transposed_national_id_vouches_for_a_record_whose_given_name_was_replaced() {
    // The last two digits swapped (..01 / ..10, nine apart: not a sibling's
    // number) with the family name, birth date and address agreeing.
    let rewritten = P {
        given: "holly",
        ssn: "4215410",
        ..BASE
    };
    assert_eq!(conflict(&BASE, &rewritten), None);
    let c = clusters(&[BASE, rewritten]);
    assert_eq!(c[0], c[1]);
    // Two edits in the ID vouch too, with the names and the place agreeing
    // but the birth date rewritten.
    let redated = P {
        dob: "1988-06-13",
        ssn: "4251041",
        ..BASE
    };
    assert_eq!(conflict(&BASE, &redated), None);
    // Without the place, or with only one of names and date, they do not.
    let moved = P {
        street: "4 narrabundah lane",
        city: "penola",
        zip: "6168",
        ..redated
    };
    assert_eq!(conflict(&BASE, &moved), Some(Conflict::BirthDate));
    let stranger = P {
        given: "holly",
        family: "green",
        ssn: "4215410",
        ..BASE
    };
    assert_eq!(conflict(&BASE, &stranger), Some(Conflict::GivenName));
}

#[test]
fn a_record_with_its_own_rewritten_birth_date_joins_when_another_member_sides_with_it() {
    // FEBRL3's person 152 in shape: the original, a duplicate with a new
    // national ID, and a duplicate with a new birth date but the original ID.
    let org = P {
        ssn: "5701396",
        ..BASE
    };
    let new_id = P {
        ssn: "2016958",
        street: "12 woinarski place",
        ..org
    };
    let new_date = P {
        dob: "1916-02-11",
        city: "mulgrave est",
        ..org
    };
    let c = clusters(&[org, new_id, new_date]);
    assert!(c[0] == c[1] && c[1] == c[2], "one person: {c:?}");
}

#[test]
fn a_record_with_a_parents_national_id_does_not_join_parent_and_child() {
    // A son's row carrying his father's ID (a guarantor's) sides with the
    // father on the ID and with the son on the birth date: it is not evidence
    // that father and son are one person.
    let father = P {
        given: "robert",
        family: "hughes",
        dob: "1961-07-02",
        ssn: "3675381",
        ..BASE
    };
    let son = P {
        dob: "1988-11-23",
        ssn: "6447881",
        ..father
    };
    let son_with_fathers_id = P {
        ssn: "3675381",
        ..son
    };
    let c = clusters(&[father, son, son_with_fathers_id]);
    assert_ne!(c[0], c[1], "father and son: {c:?}");
}

#[test]
fn records_of_a_deduplicated_source_never_link_to_each_other() {
    let rows = [demo(&BASE), demo(&BASE)];
    let model = Model::builtin();
    let mut config = MatchConfig::default();
    let same_source = ["registry", "registry"];
    let c = link_batch_sources(&rows, &same_source, &model, &config).clusters;
    assert_eq!(c[0], c[1], "undeclared: identical rows link");
    config.deduplicated_sources.insert("registry".to_owned());
    let c = link_batch_sources(&rows, &same_source, &model, &config).clusters;
    assert_ne!(c[0], c[1], "declared: two rows are two people");
    // Nor through a record of another source: a cluster takes one of them.
    let typo = P {
        ssn: "4215402",
        ..BASE
    };
    let rows = [demo(&BASE), demo(&BASE), demo(&typo)];
    let sources = ["registry", "clinic", "registry"];
    let c = link_batch_sources(&rows, &sources, &model, &MatchConfig::default()).clusters;
    assert!(c[0] == c[1] && c[1] == c[2], "undeclared: {c:?}");
    let c = link_batch_sources(&rows, &sources, &model, &config).clusters;
    assert!(c[0] == c[1] && c[1] != c[2], "declared: {c:?}");
    // A clinic row that fits two registry rows equally joins neither.
    let rows = [demo(&BASE), demo(&BASE), demo(&BASE)];
    let c = link_batch_sources(&rows, &sources, &model, &config).clusters;
    assert!(c[0] != c[1] && c[1] != c[2], "ambiguous: {c:?}");
}

#[test]
fn deduplicated_sources_pair_a_rewritten_record_with_its_only_counterpart() {
    let model = Model::builtin();
    let config = MatchConfig {
        deduplicated_sources: ["a", "b"].map(str::to_owned).into(),
        ..MatchConfig::default()
    };
    // FEBRL4's brooke / rebekah green in shape: the given name and national ID
    // rewritten, everything else the same.
    let rewritten = P {
        given: "rebekah",
        ssn: "4383145",
        ..BASE
    };
    let rows = [demo(&BASE), demo(&rewritten)];
    let plain = link_batch(&rows, &model, &MatchConfig::default());
    assert_ne!(plain[0], plain[1], "without the declaration: review");
    let report = link_batch_sources(&rows, &["a", "b"], &model, &config);
    assert_eq!(report.clusters[0], report.clusters[1]);
    assert_eq!(report.one_to_one_links, 1);
    // A rival in b that fits as well (a twin sister) leaves both to review.
    let sister = P {
        given: "rachel",
        ssn: "9021377",
        ..BASE
    };
    let rows = [demo(&BASE), demo(&rewritten), demo(&sister)];
    let c = link_batch_sources(&rows, &["a", "b", "b"], &model, &config).clusters;
    assert!(c[0] != c[1] && c[0] != c[2], "{c:?}");
    // Positive evidence of two people is never overridden: consecutive IDs.
    let twin = P {
        given: "rebekah",
        ssn: "4215402",
        ..BASE
    };
    let rows = [demo(&BASE), demo(&twin)];
    let c = link_batch_sources(&rows, &["a", "b"], &model, &config).clusters;
    assert_ne!(c[0], c[1]);
}

#[test]
fn street_and_family_initial_block_a_record_whose_other_keys_were_rewritten() {
    // Given name, birth date, national ID and postal code all rewritten: only
    // the street and the family name remain, and the pair still meets.
    let rewritten = P {
        given: "zachary",
        dob: "1903-12-29",
        zip: "3208",
        ssn: "9876543",
        ..BASE
    };
    let rows = [demo(&BASE), demo(&rewritten)];
    let report = link_batch_sources(
        &rows,
        &["a", "b"],
        &Model::builtin(),
        &MatchConfig::default(),
    );
    assert_eq!(report.compared_pairs, 1, "the pair is compared");
}

#[test]
fn a_given_name_split_at_another_point_is_one_name() {
    // FEBRL3's lachlan-john / lachlq-njohn in shape: the break between the
    // two parts moved (and a typo), the national ID rewritten.
    let org = P {
        given: "lachlan-john",
        ..BASE
    };
    let moved = P {
        given: "lachlq-njohn",
        ssn: "8009557",
        ..BASE
    };
    assert_eq!(conflict(&org, &moved), None);
    let c = clusters(&[org, moved]);
    assert_eq!(c[0], c[1]);
    // A twin whose first name differs in a letter, with the same middle
    // name, is another person; so is one with another middle name.
    let tom = P {
        given: "tom alan",
        ..BASE
    };
    let tim = P {
        given: "tim alan",
        ssn: "8009557",
        ..BASE
    };
    assert_eq!(conflict(&tom, &tim), Some(Conflict::GivenName));
    let peter = P {
        given: "lachlan peter",
        ssn: "8009557",
        ..BASE
    };
    assert_eq!(conflict(&org, &peter), Some(Conflict::GivenName));
    let c = clusters(&[tom, tim, org, peter]);
    assert!(c[0] != c[1] && c[2] != c[3], "{c:?}");
}

#[test]
fn a_record_whose_birth_date_and_id_were_rewritten_joins_when_a_member_lies_between() {
    // FEBRL3's finlay white in shape: a member with another typo of the ID
    // (two edits) and the original birth date; a new record with a new birth
    // date and its own typo of the ID (one edit). The two differ in both, but
    // the original holds the one's birth date and an ID near both.
    let org = P {
        ssn: "4215401",
        ..BASE
    };
    let typos = P {
        given: "harriett",
        ssn: "4215831",
        ..org
    };
    let redated = P {
        dob: "1964-01-21",
        ssn: "4275401",
        ..org
    };
    let c = clusters(&[org, typos, redated]);
    assert!(c[0] == c[1] && c[1] == c[2], "one person: {c:?}");
    // IDs sequential to each other (a sibling's number in shape) are not
    // explained by an original near both.
    let transposed = P {
        ssn: "4215410",
        ..typos
    };
    let next = P {
        ssn: "4215411",
        ..redated
    };
    let c = clusters(&[org, transposed, next]);
    assert!(c[0] == c[1] && c[1] != c[2], "{c:?}");
}

#[test]
fn a_next_number_its_cluster_outvotes_does_not_keep_out_a_record_with_the_cluster_id() {
    // FEBRL3's connor / raquel nguyen in shape: two rows with the ID, one with
    // a last-digit typo (only the last digit differs: a twin's number in
    // shape), and a row whose given name was replaced but which has the
    // cluster's ID.
    let org = P {
        given: "connor",
        ssn: "1825598",
        ..BASE
    };
    let moved = P {
        street: "19 lancehill avenue kittani",
        ..org
    };
    let typo = P {
        ssn: "1825594",
        street: "11 woinarski place",
        ..org
    };
    let renamed = P {
        given: "raquel",
        city: "mulgrave eats",
        ..org
    };
    let c = clusters(&[org, moved, typo, renamed]);
    assert!(c.iter().all(|x| *x == c[0]), "one person: {c:?}");
    // Twins: the sister's own row and one that carries her brother's ID. Her
    // number is not outvoted (one row each), so the brother stays apart.
    let brother = P {
        given: "connor",
        ssn: "1825598",
        ..BASE
    };
    let sister = P {
        given: "raquel",
        ssn: "1825599",
        ..BASE
    };
    let sister_with_his_id = P {
        ssn: "1825598",
        ..sister
    };
    let c = clusters(&[brother, sister, sister_with_his_id]);
    assert_ne!(c[0], c[1], "twins: {c:?}");
}

#[test]
fn a_next_number_vouches_for_swapped_letters_or_a_missing_birth_date_in_the_same_place() {
    // FEBRL3's benjamin camens in shape: the original, a row with two
    // letters of the given name swapped, a row without a birth date, and a
    // row with a last-digit typo in the ID, a family-name typo and a
    // birth-date typo.
    let org = P {
        ssn: "3523836",
        ..BASE
    };
    let swapped = P {
        given: "harreit",
        ..org
    };
    let undated = P { dob: "", ..org };
    let next = P {
        family: "horsey",
        dob: "1971-08-26",
        street: "7 woinarski place white lodge",
        ssn: "3523835",
        ..org
    };
    assert_eq!(conflict(&swapped, &next), None);
    assert_eq!(conflict(&undated, &next), None);
    let c = clusters(&[org, swapped, undated, next]);
    assert!(c.iter().all(|x| *x == c[0]), "one person: {c:?}");
    // A twin's name one letter off (MARK / MARC), or no birth date and
    // another place, is no typo: the next number stays a sibling's.
    let mark = P {
        given: "mark",
        ..org
    };
    let marc = P {
        given: "marc",
        ..next
    };
    assert_eq!(conflict(&mark, &marc), Some(Conflict::NationalId));
    let moved = P {
        street: "4 narrabundah lane",
        city: "penola",
        zip: "6168",
        ..undated
    };
    assert_eq!(conflict(&moved, &next), Some(Conflict::NationalId));
}

#[test]
fn an_id_without_its_last_digit_blocks_a_record_whose_names_date_and_street_were_mistyped() {
    let org = P {
        ssn: "3523836",
        ..BASE
    };
    let mistyped = P {
        family: "horsey",
        dob: "1971-09-25",
        street: "7 woinarski place white lodge",
        ssn: "3523835",
        ..org
    };
    let rows = [demo(&org), demo(&mistyped)];
    let report = link_batch_sources(
        &rows,
        &["a", "b"],
        &Model::builtin(),
        &MatchConfig::default(),
    );
    assert_eq!(report.compared_pairs, 1, "the pair is compared");
}
