//! Linkage behaviour a user would notice: look-alike people stay apart (twins,
//! junior/senior, household members, common names, placeholders) and the same
//! person links through nicknames, typos, day/month swaps, maiden names and moves.

use std::sync::Arc;

use tessera_matching::{
    Address, Decision, Demographics, Index, MatchConfig, MatchGrade, Model, Sex, explain,
    link_batch,
};

struct P<'a> {
    given: &'a str,
    family: &'a str,
    dob: &'a str,
    sex: Sex,
    street: &'a str,
    zip: &'a str,
    phone: &'a str,
    email: &'a str,
    ssn: &'a str,
}

const BASE: P<'static> = P {
    given: "Emma",
    family: "Kowalski",
    dob: "1990-03-14",
    sex: Sex::Female,
    street: "12 Maple Street Apt 4",
    zip: "62704",
    phone: "(217) 555-0142",
    email: "",
    ssn: "",
};

fn demo(p: &P<'_>) -> Demographics {
    Demographics {
        given_names: p.given.split_whitespace().map(str::to_owned).collect(),
        family_name: p.family.to_owned(),
        birth_date: p.dob.to_owned(),
        sex: p.sex,
        addresses: vec![Address {
            lines: vec![p.street.to_owned()],
            city: "Springfield".to_owned(),
            state: "IL".to_owned(),
            postal_code: p.zip.to_owned(),
            country: String::new(),
        }],
        phones: if p.phone.is_empty() {
            vec![]
        } else {
            vec![p.phone.to_owned()]
        },
        emails: if p.email.is_empty() {
            vec![]
        } else {
            vec![p.email.to_owned()]
        },
        national_id: p.ssn.to_owned(),
        ..Demographics::default()
    }
}

fn decision(a: &Demographics, b: &Demographics) -> Decision {
    let model = Arc::new(Model::builtin());
    let mut index = Index::new(model, MatchConfig::default());
    index.upsert(1, 100, a);
    index
        .candidates(b, None)
        .ranked
        .first()
        .map_or(Decision::NoMatch, |c| c.decision)
}

fn assert_apart(a: &Demographics, b: &Demographics, what: &str) {
    assert_ne!(
        decision(a, b),
        Decision::Match,
        "{what}: must not auto-link"
    );
    let clusters = link_batch(
        &[a.clone(), b.clone()],
        &Model::builtin(),
        &MatchConfig::default(),
    );
    assert_ne!(clusters[0], clusters[1], "{what}: must stay apart in batch");
}

fn assert_linked(a: &Demographics, b: &Demographics, what: &str) {
    assert_eq!(
        decision(a, b),
        Decision::Match,
        "{what}: must link; {:?}",
        explain(&Model::builtin(), a, b)
    );
    let clusters = link_batch(
        &[a.clone(), b.clone()],
        &Model::builtin(),
        &MatchConfig::default(),
    );
    assert_eq!(clusters[0], clusters[1], "{what}: must link in batch");
}

#[test]
fn twins_stay_apart() {
    let a = demo(&P {
        ssn: "321-54-9870",
        ..BASE
    });
    let b = demo(&P {
        given: "Olivia",
        ssn: "321-54-9871",
        ..BASE
    });
    assert_apart(&a, &b, "twin sisters with consecutive SSNs");
    let b = demo(&P {
        given: "Emmett",
        sex: Sex::Male,
        ..BASE
    });
    assert_apart(&demo(&BASE), &b, "boy/girl twins with similar names");
    let a = demo(&P {
        given: "Lily",
        ..BASE
    });
    let b = demo(&P {
        given: "Lola",
        ..BASE
    });
    assert_apart(&a, &b, "twins Lily and Lola");
}

#[test]
fn junior_and_senior_stay_apart() {
    let sr = P {
        given: "Robert",
        family: "Hughes Sr",
        dob: "1961-07-02",
        sex: Sex::Male,
        ..BASE
    };
    let jr = P {
        family: "Hughes Jr",
        dob: "1988-11-23",
        ..sr
    };
    assert_apart(&demo(&sr), &demo(&jr), "junior/senior with suffixes");
    let jr_no_suffix = P {
        family: "Hughes",
        dob: "1988-11-23",
        ..sr
    };
    let sr_no_suffix = P {
        family: "Hughes",
        ..sr
    };
    assert_apart(
        &demo(&sr_no_suffix),
        &demo(&jr_no_suffix),
        "junior/senior without suffixes",
    );
    let same_dob_other_suffix = P {
        family: "Hughes Jr",
        ..sr
    };
    assert_apart(
        &demo(&sr),
        &demo(&same_dob_other_suffix),
        "JR vs SR with the same birth date",
    );
}

#[test]
fn household_members_stay_apart() {
    let wife = P {
        email: "kowalski.family@example.net",
        ..BASE
    };
    let husband = P {
        given: "Marek",
        dob: "1987-09-30",
        sex: Sex::Male,
        ..wife
    };
    let child = P {
        given: "Zofia",
        dob: "2015-01-05",
        ..wife
    };
    assert_apart(&demo(&wife), &demo(&husband), "spouses");
    assert_apart(&demo(&wife), &demo(&child), "mother and daughter");
}

#[test]
fn common_names_with_different_dates_stay_apart() {
    let a = P {
        given: "James",
        family: "Smith",
        dob: "1970-01-15",
        street: "1 Oak Ave",
        zip: "10001",
        phone: "",
        ..BASE
    };
    let b = P {
        dob: "1982-06-30",
        street: "77 Pine Rd",
        zip: "10002",
        ..a
    };
    assert_apart(&demo(&a), &demo(&b), "two James Smiths");
}

#[test]
fn same_person_links_through_noise() {
    let base = demo(&P { ssn: "", ..BASE });
    let cases = [
        (
            "nickname",
            P {
                given: "William",
                family: "Turner",
                sex: Sex::Male,
                ..BASE
            },
            P {
                given: "Bill",
                family: "Turner",
                sex: Sex::Male,
                ..BASE
            },
        ),
        (
            "typo",
            P {
                given: "Katherine",
                family: "Thompson",
                ..BASE
            },
            P {
                given: "Katherine",
                family: "Thompsen",
                ..BASE
            },
        ),
        (
            "day/month swap",
            BASE,
            P {
                dob: "1990-14-03",
                ..BASE
            },
        ),
        (
            "day/month swap (US layout)",
            BASE,
            P {
                dob: "03/14/1990",
                ..BASE
            },
        ),
        (
            "moved address",
            BASE,
            P {
                street: "900 Lakeview Blvd",
                zip: "60614",
                ..BASE
            },
        ),
        (
            "diacritics and case",
            P {
                given: "Zoë",
                family: "Núñez",
                ..BASE
            },
            P {
                given: "ZOE",
                family: "NUNEZ",
                ..BASE
            },
        ),
        (
            "hyphenated surname",
            P {
                family: "Garcia-Lopez",
                ..BASE
            },
            P {
                family: "Garcia Lopez",
                ..BASE
            },
        ),
        (
            "given/family swapped",
            BASE,
            P {
                given: "Kowalski",
                family: "Emma",
                ..BASE
            },
        ),
        (
            "street abbreviations",
            P { phone: "", ..BASE },
            P {
                phone: "",
                street: "12 MAPLE ST APARTMENT 4",
                ..BASE
            },
        ),
    ];
    for (what, a, b) in cases {
        assert_linked(&demo(&a), &demo(&b), what);
    }
    assert_linked(&base, &base.clone(), "identical");
}

#[test]
fn maiden_name_links() {
    let before = demo(&P {
        family: "Johnson",
        ..BASE
    });
    let mut after = demo(&P {
        family: "Kowalski",
        street: "5 Birch Ct",
        zip: "62711",
        ..BASE
    });
    after.previous_family_names = vec!["Johnson".to_owned()];
    assert_linked(&before, &after, "married name with maiden name recorded");
    let e = explain(&Model::builtin(), &before, &after);
    let family = e
        .field_weights
        .iter()
        .find(|w| w.field == "family_name")
        .unwrap();
    assert_eq!(family.level, "previous_or_part");
    assert!(family.weight > 0.0);
}

#[test]
fn placeholders_carry_no_weight_and_never_link() {
    let doe = P {
        given: "John",
        family: "Doe",
        dob: "1900-01-01",
        sex: Sex::Unknown,
        street: "Unknown",
        zip: "",
        phone: "555-555-5555",
        email: "",
        ssn: "999-99-9999",
    };
    let e = explain(&Model::builtin(), &demo(&doe), &demo(&doe));
    for field in [
        "given_name",
        "family_name",
        "birth_date",
        "phones",
        "national_id",
        "address_line",
    ] {
        let w = e.field_weights.iter().find(|w| w.field == field).unwrap();
        assert_eq!(
            (w.level.as_str(), w.weight),
            ("placeholder", 0.0),
            "{field}"
        );
    }
    assert_apart(&demo(&doe), &demo(&doe), "two JOHN DOE placeholders");
    let baby = P {
        given: "Baby Girl",
        ssn: "000-00-0000",
        ..BASE
    };
    let other_baby = P {
        given: "Baby Girl",
        dob: "1990-03-15",
        phone: "",
        street: "3 Elm St",
        ..baby
    };
    assert_apart(
        &demo(&baby),
        &demo(&other_baby),
        "two BABY GIRL KOWALSKI newborns",
    );
}

#[test]
fn explanations_and_grades_are_consistent() {
    let a = demo(&P {
        ssn: "321-54-9870",
        email: "emma.k@example.org",
        ..BASE
    });
    let e = explain(&Model::builtin(), &a, &a);
    let total: f64 =
        e.field_weights.iter().map(|w| w.weight).sum::<f64>() + Model::builtin().prior_match_weight;
    assert!(
        (total - e.score).abs() < 1e-9,
        "weights add up to the score"
    );
    assert!(e.probability > 0.999);
    let mut index = Index::new(Arc::new(Model::builtin()), MatchConfig::default());
    index.upsert(1, 7, &a);
    let c = &index.candidates(&a, None).ranked[0];
    assert_eq!(
        (c.master, c.decision, c.grade),
        (7, Decision::Match, MatchGrade::Certain)
    );
    assert_eq!(c.best_record, 1);
    assert!(
        c.field_weights
            .iter()
            .any(|w| w.field == "national_id" && w.level == "exact")
    );
}

#[test]
fn sparse_records_do_not_bridge_household_members_into_one_cluster() {
    let mother = P {
        given: "Ana Isabel",
        family: "Flores",
        dob: "1979-06-19",
        ssn: "363-94-9038",
        ..BASE
    };
    let daughter = P {
        given: "Ana Barbara",
        family: "Flores",
        dob: "2011-06-29",
        ssn: "203-36-2547",
        ..BASE
    };
    // Name, address and phone only: each matches both of them.
    let sparse = P {
        given: "Ana",
        family: "Flores",
        dob: "",
        ..BASE
    };
    let rows = [demo(&mother), demo(&sparse), demo(&daughter), demo(&sparse)];
    let clusters = link_batch(&rows, &Model::builtin(), &MatchConfig::default());
    assert_ne!(
        clusters[0], clusters[2],
        "two birth dates and two SSNs in one cluster"
    );
}

#[test]
fn a_record_that_fits_two_household_members_equally_joins_neither() {
    let mother = P {
        given: "Ana",
        family: "Flores",
        dob: "1979-06-19",
        ssn: "363-94-9038",
        ..BASE
    };
    let daughter = P {
        dob: "2011-06-29",
        ssn: "203-36-2547",
        ..mother
    };
    // Name, address and phone only: it fits both of them.
    let sparse = P {
        dob: "",
        ssn: "",
        ..mother
    };
    let rows = [
        demo(&mother),
        demo(&mother),
        demo(&daughter),
        demo(&daughter),
        demo(&sparse),
    ];
    let clusters = link_batch(&rows, &Model::builtin(), &MatchConfig::default());
    assert_eq!(clusters[0], clusters[1]);
    assert_eq!(clusters[2], clusters[3]);
    assert_ne!(clusters[0], clusters[2], "mother and daughter stay apart");
    assert!(
        clusters[..4].iter().all(|c| *c != clusters[4]),
        "the ambiguous row joins neither"
    );
}

#[test]
fn index_sends_a_row_that_fits_two_masters_to_review() {
    let mother = P {
        given: "Ana",
        family: "Flores",
        dob: "1979-06-19",
        ssn: "363-94-9038",
        ..BASE
    };
    let daughter = P {
        dob: "2011-06-29",
        ssn: "203-36-2547",
        ..mother
    };
    let sparse = P {
        dob: "",
        ssn: "",
        ..mother
    };
    let mut index = Index::new(Arc::new(Model::builtin()), MatchConfig::default());
    index.upsert(1, 100, &demo(&mother));
    index.upsert(2, 200, &demo(&daughter));
    let found = index.candidates(&demo(&sparse), None);
    assert_eq!(found.ranked.len(), 2);
    assert_eq!(found.ranked[0].decision, Decision::PossibleMatch);
    // The mother's own rows still find her.
    let again = index.candidates(&demo(&mother), None);
    assert_eq!(again.ranked[0].master, 100);
    assert_eq!(again.ranked[0].decision, Decision::Match);
}

#[test]
fn same_name_and_birth_date_in_different_cities_are_not_bridged() {
    let here = P {
        given: "Robert",
        family: "Brown",
        dob: "1944-11-20",
        sex: Sex::Male,
        street: "672 Cedar St",
        zip: "90020",
        phone: "310-290-0556",
        email: "robert_brown@icloud.com",
        ssn: "048-05-6840",
    };
    let there = P {
        street: "48 Broad Way",
        zip: "11217",
        phone: "718-655-7428",
        ssn: "703-34-8407",
        ..here
    };
    // Name, birth date and the first one's phone: it matches both by name and date.
    let sparse = P {
        street: "",
        zip: "",
        email: "",
        ssn: "",
        ..here
    };
    let mut far = demo(&there);
    far.addresses[0].city = "Brooklyn".into();
    far.addresses[0].state = "NY".into();
    far.emails = vec!["brownr@icloud.com".into()];
    let rows = [demo(&here), demo(&sparse), far.clone(), far];
    let clusters = link_batch(&rows, &Model::builtin(), &MatchConfig::default());
    assert_eq!(clusters[0], clusters[1]);
    assert_ne!(clusters[0], clusters[2], "two SSNs, two cities: two people");
}

#[test]
fn look_alike_names_sharing_a_phone_with_different_ssns_are_siblings() {
    let kayla = P {
        given: "Kayla",
        family: "Anderson",
        dob: "1971-11-22",
        phone: "212-820-1413",
        ssn: "557-90-2287",
        ..BASE
    };
    let kyla = P {
        given: "Kyla",
        ssn: "816-52-1507",
        ..kayla
    };
    assert_apart(&demo(&kayla), &demo(&kyla), "twins Kayla / Kyla");
    let emma = P {
        given: "Emma",
        ..kayla
    };
    let emily = P {
        given: "Emily",
        ..kyla
    };
    assert_apart(&demo(&emma), &demo(&emily), "twins Emma / Emily");
    // Without the second SSN it is a typo of the same person.
    let typo = P { ssn: "", ..kyla };
    assert_linked(&demo(&kayla), &demo(&typo), "Kayla / Kyla typo");
}

#[test]
fn same_name_and_phone_with_two_ssns_and_no_birth_date_stay_apart() {
    let father = P {
        given: "George",
        family: "Scott",
        dob: "1961-05-13",
        sex: Sex::Male,
        phone: "972-807-4234",
        ssn: "428-08-7559",
        ..BASE
    };
    let son = P {
        given: "George J.",
        dob: "",
        ssn: "675-50-3408",
        ..father
    };
    assert_apart(&demo(&father), &demo(&son), "household, two SSNs");
    let same = P {
        ssn: "428-08-7559",
        ..son
    };
    assert_linked(&demo(&father), &demo(&same), "same SSN, no birth date");
}

#[test]
fn look_alike_twins_each_with_an_email_of_their_own_name_stay_apart() {
    let kayla = P {
        given: "Kayla",
        family: "Harris",
        dob: "",
        email: "kayla.harris@gmail.com",
        ..BASE
    };
    let kyla = P {
        given: "Kyla",
        email: "kyla.harris@gmail.com",
        ..kayla
    };
    assert_apart(
        &demo(&kayla),
        &demo(&kyla),
        "twins Kayla / Kyla, own emails",
    );
    let sara = P {
        given: "Sara",
        family: "Robinson",
        email: "sara.robinson98@hotmail.com",
        ..kayla
    };
    let sarah = P {
        given: "Sarah",
        email: "sarah.robinson98@hotmail.com",
        ..sara
    };
    assert_apart(
        &demo(&sara),
        &demo(&sarah),
        "twins Sara / Sarah, own emails",
    );
    // A typo in the name does not reach the email typed separately.
    let typo = P {
        given: "Kyla",
        email: "kayla.harris@gmail.com",
        ..kayla
    };
    assert_linked(&demo(&kayla), &demo(&typo), "Kayla / Kyla typo, one email");
}

#[test]
fn different_middle_names_are_two_people() {
    let a = P {
        given: "Charles James",
        family: "Brown",
        sex: Sex::Male,
        ..BASE
    };
    let b = P {
        given: "Charles Kenneth",
        ..a
    };
    assert_apart(&demo(&a), &demo(&b), "Charles James / Charles Kenneth");
    let initial = P {
        given: "Charles J.",
        ..a
    };
    assert_linked(&demo(&a), &demo(&initial), "middle name and its initial");
}

#[test]
fn nickname_related_names_of_boy_and_girl_twins_stay_apart() {
    // The nickname table relates AARON and ERIN; different sexes tell them apart.
    let aaron = P {
        given: "Aaron",
        family: "Torres",
        sex: Sex::Male,
        ..BASE
    };
    let erin = P {
        given: "Erin",
        sex: Sex::Female,
        ..aaron
    };
    assert_apart(&demo(&aaron), &demo(&erin), "twins Aaron / Erin");
}

#[test]
fn two_formal_names_sharing_a_longer_name_are_not_nicknames() {
    // ROSA and LINDA are both nicknames of ROSALINDA, and names of their own.
    let rosa = P {
        given: "Rosa",
        family: "Garcia",
        ssn: "316-57-6600",
        ..BASE
    };
    let linda = P {
        given: "Linda",
        ssn: "416-72-4165",
        ..rosa
    };
    assert_apart(&demo(&rosa), &demo(&linda), "twins Rosa / Linda");
}

#[test]
fn spanish_nicknames_and_mistyped_nicknames_link() {
    let jose = P {
        given: "Jose",
        family: "Lopez",
        sex: Sex::Male,
        ..BASE
    };
    let pepe = P {
        given: "Pepe",
        ..jose
    };
    assert_linked(&demo(&jose), &demo(&pepe), "Jose / Pepe");
    let pamela = P {
        given: "Paamela",
        family: "Wilson",
        ..BASE
    };
    let pam = P {
        given: "Pam",
        ..pamela
    };
    assert_linked(&demo(&pamela), &demo(&pam), "Paamela (typo) / Pam");
}

#[test]
fn a_sparse_record_never_bridges_twins_with_their_own_emails() {
    let kayla = P {
        given: "Kayla",
        family: "Harris",
        dob: "1941-08-19",
        phone: "623-683-8516",
        email: "kayla.harris@gmail.com",
        ..BASE
    };
    let kyla = P {
        given: "Kyla",
        email: "kyla.harris@gmail.com",
        ..kayla
    };
    // Sparse rows of each twin: the household's address and phone, no email.
    let kayla_sparse = P {
        dob: "",
        email: "",
        ..kayla
    };
    let kyla_sparse = P {
        dob: "",
        email: "",
        ..kyla
    };
    let rows = [
        demo(&kayla),
        demo(&kyla),
        demo(&kayla_sparse),
        demo(&kyla_sparse),
    ];
    let clusters = link_batch(&rows, &Model::builtin(), &MatchConfig::default());
    assert_ne!(
        clusters[0], clusters[1],
        "twins with their own emails stay apart: {clusters:?}"
    );
}

#[test]
fn a_name_only_pair_with_a_changed_family_name_does_not_block_a_cluster() {
    // The married name with the household's details; the same person with a
    // middle name and no address; and a sparse row under the maiden name that
    // shares only the street with the first.
    let married = P {
        given: "Brenda",
        family: "Miller",
        dob: "1975-01-25",
        street: "656 Spring Ct Apt 23A",
        phone: "504-630-4209",
        ssn: "007-77-6000",
        ..BASE
    };
    let mut middle = demo(&P {
        given: "Brenda Margaret",
        phone: "",
        ..married
    });
    middle.addresses.clear();
    let maiden = demo(&P {
        family: "Mitchell",
        dob: "",
        phone: "",
        ssn: "",
        email: "brenda.mitchell@outlook.com",
        ..married
    });
    let rows = [demo(&married), middle, maiden];
    let clusters = link_batch(&rows, &Model::builtin(), &MatchConfig::default());
    assert_eq!(clusters[0], clusters[1]);
    assert_eq!(
        clusters[0], clusters[2],
        "maiden-name row joins despite the name-only pair: {clusters:?}"
    );
}

#[test]
fn a_record_whose_two_best_links_are_sparse_rows_of_one_person_links() {
    // Two rows of one person that share nothing but the name (a second phone);
    // a third row carries the first's phone and the second's email. Its two
    // links are equally good and are one person, so it is no ambiguity.
    let with_phone = P {
        given: "Sarah",
        family: "Ramos",
        dob: "",
        street: "",
        zip: "",
        phone: "210-295-0054",
        ..BASE
    };
    let with_email = P {
        sex: Sex::Unspecified,
        phone: "726-442-0792",
        email: "sramos1969@aol.com",
        ..with_phone
    };
    let both = P {
        email: "sramos1969@aol.com",
        ..with_phone
    };
    let rows: Vec<Demographics> = [with_phone, with_email, both]
        .iter()
        .map(|p| {
            let mut d = demo(p);
            d.addresses.clear();
            d
        })
        .collect();
    let clusters = link_batch(&rows, &Model::builtin(), &MatchConfig::default());
    assert!(
        clusters[0] == clusters[2] && clusters[1] == clusters[2],
        "one person: {clusters:?}"
    );
}

#[test]
fn a_placeholder_name_links_on_what_only_the_person_has() {
    let amy = P {
        given: "Amy",
        family: "Gonzalez",
        dob: "1955-07-04",
        phone: "646-262-6460",
        ssn: "155-55-0034",
        ..BASE
    };
    let doe = P {
        given: "Jane",
        family: "Doe",
        ..amy
    };
    assert_linked(
        &demo(&amy),
        &demo(&doe),
        "JANE DOE with the birth date, address, phone and SSN",
    );
    // Only the household's address and phone: anyone living there.
    let household_only = P {
        dob: "",
        ssn: "",
        ..doe
    };
    assert_apart(
        &demo(&amy),
        &demo(&household_only),
        "JANE DOE at the address",
    );
    // Twins share a birth date, address and phone: a BABY GIRL row that fits
    // both joins neither.
    let twin_a = P {
        given: "Olivia",
        family: "Kowalski",
        dob: "2024-03-14",
        ssn: "",
        ..BASE
    };
    let twin_b = P {
        given: "Emma",
        ..twin_a
    };
    let baby = P {
        given: "Baby Girl",
        ..twin_a
    };
    let rows = [
        demo(&twin_a),
        demo(&twin_a),
        demo(&twin_b),
        demo(&twin_b),
        demo(&baby),
    ];
    let clusters = link_batch(&rows, &Model::builtin(), &MatchConfig::default());
    assert_ne!(clusters[0], clusters[2], "twins stay apart");
    assert!(
        clusters[..4].iter().all(|c| *c != clusters[4]),
        "the BABY GIRL row joins neither twin: {clusters:?}"
    );
}

#[test]
fn a_truncated_name_vouched_by_its_ssn_does_not_keep_out_a_certain_link() {
    let full = P {
        given: "Samuel",
        family: "White",
        dob: "1952-09-17",
        sex: Sex::Male,
        street: "25585 Elm Dr",
        phone: "916-486-9952",
        email: "samuel1952@hotmail.com",
        ssn: "664-60-2172",
        ..BASE
    };
    // SA for SAMUEL: the shared SSN vouches for it inside its cluster.
    let truncated = P {
        given: "Sa",
        email: "",
        ..full
    };
    let sparse = P {
        dob: "",
        sex: Sex::Unspecified,
        phone: "",
        ssn: "",
        ..full
    };
    let rows = [demo(&full), demo(&truncated), demo(&sparse)];
    let clusters = link_batch(&rows, &Model::builtin(), &MatchConfig::default());
    assert!(
        clusters[0] == clusters[1] && clusters[0] == clusters[2],
        "one person: {clusters:?}"
    );
}

#[test]
fn a_married_name_does_not_count_against_a_shared_identifier() {
    let maiden = P {
        given: "Helen",
        family: "Hughes",
        dob: "1980-11-07",
        street: "94 2nd Street",
        phone: "",
        email: "helen1980@yahoo.com",
        ssn: "113-39-9457",
        ..BASE
    };
    let mut married = demo(&P {
        family: "Kim",
        dob: "",
        phone: "216-668-2358",
        ssn: "",
        ..maiden
    });
    married.addresses.clear();
    assert_linked(&demo(&maiden), &married, "married name, same email");
    let e = explain(&Model::builtin(), &demo(&maiden), &married);
    assert!(
        e.field_weights
            .iter()
            .any(|w| w.field == "family_name_change" && w.weight > 0.0),
        "{e:?}"
    );
    // Two women of one given name sharing nothing else stay apart, and a man
    // with another family name is not given the benefit.
    let other = P {
        family: "Kim",
        dob: "1980-11-07",
        street: "7 Oak Ave",
        zip: "62711",
        phone: "",
        email: "",
        ssn: "",
        ..maiden
    };
    assert_apart(
        &demo(&maiden),
        &demo(&other),
        "same given name and date only",
    );
    let he = P {
        given: "Paul",
        sex: Sex::Male,
        ..maiden
    };
    let he_other = P {
        family: "Kim",
        dob: "",
        ssn: "",
        street: "",
        zip: "",
        ..he
    };
    let e = explain(&Model::builtin(), &demo(&he), &demo(&he_other));
    assert!(
        e.field_weights
            .iter()
            .all(|w| w.field != "family_name_change"),
        "{e:?}"
    );
}
