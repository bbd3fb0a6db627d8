//! What a user of the generated benchmark would notice: determinism, complete and
//! consistent truth, the traps and the noise at their configured rates, and CSV
//! that parses.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::person::{Relation, Sex};
use crate::tables::{CITIES, FEMALE_GIVEN, HISPANIC_FEMALE_GIVEN, HISPANIC_MALE_GIVEN, MALE_GIVEN};

struct Output {
    records: Vec<u8>,
    truth: Vec<u8>,
    stats: SynthStats,
}

fn run(config: &SynthConfig) -> Output {
    let mut records = Vec::new();
    let mut truth = Vec::new();
    let stats = write_csv(config, &mut records, &mut truth).expect("generation succeeds");
    Output {
        records,
        truth,
        stats,
    }
}

fn parse(bytes: &[u8]) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let mut reader = csv::Reader::from_reader(bytes);
    let header = reader.headers().expect("header").clone();
    let rows = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("every row parses");
    (header, rows)
}

fn small(people: usize, seed: u64) -> SynthConfig {
    SynthConfig {
        people,
        seed,
        ..SynthConfig::default()
    }
}

/// A silo that holds everyone and records every field.
fn full_silo(name: &str) -> SiloSpec {
    SiloSpec {
        name: name.into(),
        coverage: 1.0,
        duplicate_rate: 0.0,
        id_style: IdStyle::Prefixed {
            prefix: "T".into(),
            digits: 10,
        },
        fields: FieldPresence {
            birth_date: 1.0,
            sex: 1.0,
            address: 1.0,
            phone: 1.0,
            email: 1.0,
            ssn: 1.0,
        },
    }
}

/// Records joined with the true person, for a config.
fn joined(config: &SynthConfig) -> (Vec<SynthRecord>, HashMap<u64, Person>) {
    let people: HashMap<u64, Person> = Population::new(config).map(|p| (p.id, p)).collect();
    (generate(config).collect(), people)
}

#[test]
fn the_same_seed_gives_identical_bytes_and_another_seed_does_not() {
    let a = run(&small(2_000, 42));
    let b = run(&small(2_000, 42));
    let c = run(&small(2_000, 43));
    assert!(a.records == b.records, "records differ for the same seed");
    assert!(a.truth == b.truth, "truth differs for the same seed");
    assert_eq!(a.stats, b.stats);
    assert!(a.records != c.records, "another seed gave the same records");
}

#[test]
fn header_is_exact_and_every_row_has_13_columns() {
    let out = run(&small(3_000, 1));
    let text = std::str::from_utf8(&out.records).expect("utf-8");
    assert!(text.starts_with(
        "source,local_id,given_name,family_name,birth_date,sex,address_line,city,state,postal_code,phone,email,ssn\n"
    ));
    let (header, rows) = parse(&out.records);
    assert_eq!(header.iter().collect::<Vec<_>>(), RECORDS_HEADER);
    assert_eq!(rows.len(), out.stats.records);
    for row in &rows {
        assert_eq!(row.len(), 13, "{row:?}");
    }
    let (truth_header, truth) = parse(&out.truth);
    assert_eq!(truth_header.iter().collect::<Vec<_>>(), TRUTH_HEADER);
    assert!(truth.iter().all(|r| r.len() == 3));
}

#[test]
fn truth_covers_every_record_and_every_person_with_unique_local_ids() {
    let out = run(&small(5_000, 7));
    let (_, rows) = parse(&out.records);
    let (_, truth) = parse(&out.truth);
    assert_eq!(truth.len(), rows.len(), "one truth row per record");
    let mut keys = HashSet::new();
    let mut people = HashSet::new();
    for (record, t) in rows.iter().zip(&truth) {
        assert_eq!(
            (&record[0], &record[1]),
            (&t[0], &t[1]),
            "truth in record order"
        );
        assert!(
            keys.insert((t[0].to_owned(), t[1].to_owned())),
            "duplicate local id {} in {}",
            &t[1],
            &t[0]
        );
        people.insert(t[2].parse::<u64>().expect("numeric person id"));
    }
    assert_eq!(people.len(), 5_000, "every person has at least one record");
    assert_eq!(out.stats.people, 5_000);
    assert_eq!(people.iter().max(), Some(&4_999));
}

#[test]
fn local_ids_follow_each_silos_style_and_do_not_carry_the_person_id() {
    let (records, _) = joined(&small(3_000, 3));
    for r in &records {
        let id = &r.local_id;
        let ok = match r.source.as_str() {
            "ehr" => {
                id.len() == 11
                    && id.starts_with("MRN")
                    && id[3..].bytes().all(|b| b.is_ascii_digit())
            }
            "billing" => {
                id.len() == 13
                    && id.starts_with("ACC-")
                    && id[4..].bytes().all(|b| b.is_ascii_digit())
            }
            "crm" => id.len() == 36 && id.as_bytes()[14] == b'4' && id.matches('-').count() == 4,
            "marketing" => {
                id.len() == 15
                    && id.starts_with("mk_")
                    && id[3..].bytes().all(|b| b.is_ascii_hexdigit())
            }
            other => panic!("unexpected silo {other}"),
        };
        assert!(ok, "{} id {id}", r.source);
    }
    // IDs are random: sorting records by local ID does not sort them by person.
    let mut ehr: Vec<_> = records.iter().filter(|r| r.source == "ehr").collect();
    ehr.sort_by(|a, b| a.local_id.cmp(&b.local_id));
    let ascending = ehr
        .windows(2)
        .filter(|w| w[0].person_id < w[1].person_id)
        .count();
    let share = ascending as f64 / (ehr.len() - 1) as f64;
    assert!(
        (0.4..0.6).contains(&share),
        "ids correlate with person ids: {share}"
    );
}

#[test]
fn a_persons_records_are_not_adjacent_in_the_output() {
    let (records, _) = joined(&small(5_000, 31));
    let adjacent = records
        .windows(2)
        .filter(|w| w[0].person_id == w[1].person_id)
        .count();
    assert!(adjacent < records.len() / 100, "{adjacent} adjacent pairs");
    let first_half_max = records[..records.len() / 2]
        .iter()
        .map(|r| r.person_id)
        .max();
    assert!(
        first_half_max > Some(2_000),
        "output follows generation order too closely"
    );
}

#[test]
fn silos_hold_their_configured_share_of_people() {
    let out = run(&small(10_000, 11));
    let records: HashMap<&str, usize> = out
        .stats
        .silos
        .iter()
        .map(|s| (s.name.as_str(), s.records - s.duplicates))
        .collect();
    for (silo, coverage) in [
        ("ehr", 0.9),
        ("billing", 0.7),
        ("crm", 0.6),
        ("marketing", 0.5),
    ] {
        let share = records[silo] as f64 / 10_000.0;
        assert!((share - coverage).abs() < 0.025, "{silo}: {share}");
    }
    let dups: usize = out.stats.silos.iter().map(|s| s.duplicates).sum();
    assert!(dups > 500, "duplicate registrations exist: {dups}");
}

#[test]
fn common_names_repeat_and_unusual_names_occur() {
    let config = small(10_000, 5);
    let people: Vec<Person> = Population::new(&config).collect();
    let mut names: HashMap<(&str, &str), usize> = HashMap::new();
    for p in &people {
        *names
            .entry((p.given_name, p.family_name.as_str()))
            .or_default() += 1;
    }
    let james_smith = names.get(&("James", "Smith")).copied().unwrap_or(0);
    assert!(james_smith >= 5, "James Smith x{james_smith}");
    let maria_garcia = names.get(&("Maria", "Garcia")).copied().unwrap_or(0);
    assert!(maria_garcia >= 3, "Maria Garcia x{maria_garcia}");
    let family = |f: fn(&str) -> bool| people.iter().filter(|p| f(&p.family_name)).count();
    // Expected per 10,000 from the tables: about 53 apostrophes, 39 multi-part,
    // 81 with diacritics; hyphens come mostly from marriages in households.
    assert!(family(|n| n.contains('\'')) > 25, "apostrophes");
    assert!(family(|n| n.contains('-')) > 10, "hyphenated");
    assert!(family(|n| n.contains(' ')) > 18, "multi-part");
    assert!(family(|n| !n.is_ascii()) > 40, "diacritics");
}

#[test]
fn addresses_are_consistent_with_their_city_and_phones_with_their_area() {
    let config = SynthConfig {
        noise: NoiseRates::none(),
        ..small(3_000, 9)
    };
    for p in Population::new(&config) {
        for a in std::iter::once(&p.address).chain(&p.previous_address) {
            let city = CITIES
                .iter()
                .map(|(c, _)| c)
                .find(|c| c.name == a.city && c.state == a.state)
                .expect("a known city");
            assert!((city.zip_lo..=city.zip_hi).contains(&a.postal_code));
        }
        assert!(p.ssn.area != 666 && p.ssn.area != 0 && p.ssn.area < 900);
    }
}

#[test]
fn traps_are_generated_at_their_configured_counts() {
    let config = small(10_000, 13);
    let out = run(&config);
    let t = &out.stats.traps;
    assert_eq!(t.twin_pairs, 100);
    assert_eq!(t.junior_senior_pairs, 80);
    assert_eq!(t.households, 200);
    assert_eq!(t.common_name_groups, 100);
    assert!(t.household_members >= 400);

    let people: Vec<Person> = Population::new(&config).collect();
    let by_id: HashMap<u64, &Person> = people.iter().map(|p| (p.id, p)).collect();
    let mut twin_pairs = 0;
    let mut same_name = 0;
    for p in &people {
        for r in &p.relations {
            match *r {
                Relation::TwinOf(o) if o > p.id => {
                    let o = by_id[&o];
                    assert_eq!(p.birth_date, o.birth_date);
                    assert_eq!(p.family_name, o.family_name);
                    assert_eq!(p.address, o.address);
                    assert_eq!(p.phone, o.phone);
                    assert_ne!(p.given_name, o.given_name);
                    twin_pairs += 1;
                    for twin in [p, o] {
                        let female = FEMALE_GIVEN
                            .iter()
                            .chain(HISPANIC_FEMALE_GIVEN)
                            .any(|(n, _)| Some(*n) == twin.middle_name);
                        let male = MALE_GIVEN
                            .iter()
                            .chain(HISPANIC_MALE_GIVEN)
                            .any(|(n, _)| Some(*n) == twin.middle_name);
                        match twin.sex {
                            Sex::Male => assert!(!female || male, "{twin:?}"),
                            Sex::Female => assert!(!male || female, "{twin:?}"),
                            Sex::Other => {}
                        }
                    }
                }
                Relation::JuniorOf(o) => {
                    let o = by_id[&o];
                    assert_eq!(
                        (p.given_name, &p.family_name),
                        (o.given_name, &o.family_name)
                    );
                    let gap = p.birth_date.year - o.birth_date.year;
                    assert!((20..=45).contains(&gap), "gap {gap}");
                }
                Relation::SameNameAs(o) if o > p.id => {
                    let o = by_id[&o];
                    assert_eq!(
                        (p.given_name, &p.family_name),
                        (o.given_name, &o.family_name)
                    );
                    assert_ne!(p.address.city, o.address.city);
                    same_name += 1;
                }
                _ => {}
            }
        }
    }
    assert_eq!(twin_pairs, 100);
    assert!(same_name >= 100);
}

#[test]
fn twins_and_juniors_can_be_counted_from_the_output_alone() {
    // One silo that records everything, no noise: the traps are visible in the
    // records exactly as a resolver would see them.
    let config = SynthConfig {
        people: 10_000,
        seed: 21,
        silos: vec![full_silo("all")],
        noise: NoiseRates::none(),
        traps: TrapRates {
            suffix_shown: 1.0,
            ..TrapRates::default()
        },
    };
    let out = run(&config);
    let (_, rows) = parse(&out.records);
    let (_, truth) = parse(&out.truth);
    // Key on house number, city and phone: the street line's format (suffix and
    // unit spelling) varies from record to record even without noise.
    let mut by_household: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        let number = r[6].split(' ').next().unwrap_or_default().to_owned();
        by_household
            .entry((number, r[7].to_owned(), r[10].to_owned()))
            .or_default()
            .push(i);
    }
    let (mut twins, mut juniors) = (0, 0);
    for members in by_household.values() {
        for (a, &i) in members.iter().enumerate() {
            for &j in &members[a + 1..] {
                let (x, y) = (&rows[i], &rows[j]);
                assert_ne!(truth[i][2], truth[j][2], "no duplicates in this silo");
                if x[3] == y[3] && x[4] == y[4] && x[2] != y[2] {
                    twins += 1;
                }
                let jr = |r: &csv::StringRecord| {
                    r[3].ends_with("Jr") || r[3].ends_with("Jr.") || r[3].ends_with("JR")
                };
                if x[2] == y[2] && (jr(x) || jr(y)) {
                    juniors += 1;
                }
            }
        }
    }
    assert!((100..=103).contains(&twins), "twin pairs seen: {twins}");
    assert_eq!(juniors, 80);
}

#[test]
fn noise_is_applied_at_roughly_its_configured_rates() {
    let noise = NoiseRates {
        name_typo: 0.2,
        nickname: 0.3,
        date_swap: 0.3,
        missing: 0.1,
        placeholder: 0.05,
        phone_format: 0.5,
        date_typo: 0.1,
        ssn_typo: 0.1,
        ..NoiseRates::none()
    };
    let config = SynthConfig {
        people: 4_000,
        seed: 99,
        silos: vec![full_silo("all")],
        noise,
        traps: TrapRates::none(),
    };
    let (records, people) = joined(&config);
    let rate = |hits: usize, of: usize| hits as f64 / of as f64;
    let near = |what: &str, got: f64, want: f64| {
        assert!((got - want).abs() < 0.035, "{what}: {got:.3} vs {want}");
    };
    let named: Vec<_> = records
        .iter()
        .filter(|r| {
            !r.family_name.contains("DOE")
                && !r.given_name.starts_with("BABY")
                && r.given_name != "UNKNOWN"
        })
        .collect();
    let family_typos = named
        .iter()
        .filter(|r| r.family_name != people[&r.person_id].family_name)
        .count();
    near("family typo", rate(family_typos, named.len()), 0.2);

    let with_nick: Vec<_> = named
        .iter()
        .filter(|r| !tables::nicknames(people[&r.person_id].given_name).is_empty())
        .collect();
    let nicked = with_nick
        .iter()
        .filter(|r| {
            tables::nicknames(people[&r.person_id].given_name).contains(&r.given_name.as_str())
        })
        .count();
    // A nickname may itself get a typo (20%), which hides it from this count.
    near("nickname", rate(nicked, with_nick.len()), 0.3 * 0.8);

    let missing_dob = records.iter().filter(|r| r.birth_date.is_empty()).count();
    near("missing birth date", rate(missing_dob, records.len()), 0.1);
    let missing_phone = records.iter().filter(|r| r.phone.is_empty()).count();
    near("missing phone", rate(missing_phone, records.len()), 0.1);

    let placeholder_ssn = records
        .iter()
        .filter(|r| ["999-99-9999", "000-00-0000", "123-45-6789"].contains(&r.ssn.as_str()))
        .count();
    near(
        "placeholder ssn",
        rate(placeholder_ssn, records.len()),
        0.05 * 0.9,
    );
    let placeholder_dob = records
        .iter()
        .filter(|r| r.birth_date == "1900-01-01")
        .count();
    near(
        "placeholder dob",
        rate(placeholder_dob, records.len()),
        0.05 * 0.9,
    );

    let full_dates: Vec<_> = records
        .iter()
        .filter(|r| r.birth_date.len() == 10 && r.birth_date != "1900-01-01")
        .collect();
    let swapped = |d: person::Date| {
        (d.day <= 12 && d.day != d.month)
            .then(|| format!("{:04}-{:02}-{:02}", d.year, d.day, d.month))
    };
    let swappable: Vec<_> = full_dates
        .iter()
        .filter(|r| swapped(people[&r.person_id].birth_date).is_some())
        .collect();
    let swaps = swappable
        .iter()
        .filter(|r| Some(&r.birth_date) == swapped(people[&r.person_id].birth_date).as_ref())
        .count();
    // A swap of a mistyped date does not count here.
    near("day/month swap", rate(swaps, swappable.len()), 0.3 * 0.9);
    let mistyped = full_dates
        .iter()
        .filter(|r| {
            let d = people[&r.person_id].birth_date;
            r.birth_date != d.to_string() && Some(&r.birth_date) != swapped(d).as_ref()
        })
        .count();
    near("date typo", rate(mistyped, full_dates.len()), 0.1);

    let ssns: Vec<_> = records
        .iter()
        .filter(|r| {
            r.ssn.len() == 11
                && !["999-99-9999", "000-00-0000", "123-45-6789"].contains(&r.ssn.as_str())
        })
        .collect();
    let wrong_ssn = ssns
        .iter()
        .filter(|r| r.ssn != people[&r.person_id].ssn.to_string())
        .count();
    near("ssn typo", rate(wrong_ssn, ssns.len()), 0.1);

    let phones: Vec<_> = records.iter().filter(|r| !r.phone.is_empty()).collect();
    let canonical = |p: &str| p.len() == 12 && p.as_bytes()[3] == b'-' && p.as_bytes()[7] == b'-';
    let reformatted = phones.iter().filter(|r| !canonical(&r.phone)).count();
    near("phone format", rate(reformatted, phones.len()), 0.5);
}

#[test]
fn default_silos_have_their_characteristic_gaps() {
    let (records, _) = joined(&small(5_000, 17));
    let share = |silo: &str, f: fn(&SynthRecord) -> bool| {
        let rs: Vec<_> = records.iter().filter(|r| r.source == silo).collect();
        rs.iter().filter(|r| f(r)).count() as f64 / rs.len() as f64
    };
    assert!(share("marketing", |r| !r.birth_date.is_empty()) < 0.15);
    assert!(share("marketing", |r| !r.ssn.is_empty()) < 0.05);
    assert!(share("billing", |r| !r.email.is_empty()) < 0.15);
    assert!(share("ehr", |r| !r.birth_date.is_empty()) > 0.9);
    // Dates are ISO or partial ISO, never another format.
    for r in &records {
        let ok = matches!(r.birth_date.len(), 0 | 4 | 7 | 10)
            && r.birth_date.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        assert!(ok, "{}", r.birth_date);
        assert!(["", "male", "female", "other", "unknown"].contains(&r.sex.as_str()));
    }
}

#[test]
fn married_women_appear_under_different_family_names_across_silos() {
    let config = small(5_000, 23);
    let (records, people) = joined(&config);
    let mut names: HashMap<u64, HashSet<String>> = HashMap::new();
    for r in &records {
        let p = &people[&r.person_id];
        if p.maiden_name.is_some() {
            names
                .entry(p.id)
                .or_default()
                .insert(r.family_name.to_lowercase().trim().to_owned());
        }
    }
    let differing = names.values().filter(|n| n.len() > 1).count();
    assert!(
        differing > 100,
        "women seen under two family names: {differing}"
    );
    let married = people
        .values()
        .filter(|p| p.maiden_name.is_some() && p.sex == Sex::Female)
        .count();
    assert!(married > 300);
}

#[test]
fn invalid_configs_are_rejected_with_the_field_named() {
    let mut config = SynthConfig::default();
    config.noise.name_typo = 1.5;
    let err = write_csv(&config, Vec::new(), Vec::new()).expect_err("rate above 1");
    assert_eq!(
        err.to_string(),
        "invalid synth config: noise.name_typo must be between 0 and 1"
    );

    let mut config = SynthConfig::default();
    config.silos[1].name = "ehr".into();
    let err = config.validate().expect_err("duplicate silo");
    assert!(err.to_string().contains("silos[1].name"));

    let config = SynthConfig {
        silos: Vec::new(),
        ..SynthConfig::default()
    };
    assert!(config.validate().is_err());
    assert!(SynthConfig::default().validate().is_ok());

    // A silo whose id space is too small would never finish drawing unused ids.
    let mut config = SynthConfig::default();
    config.silos[0].id_style = IdStyle::Prefixed {
        prefix: "P".into(),
        digits: 4,
    };
    let err = try_generate(&config).expect_err("10,000 people, 10,000 ids");
    assert!(err.to_string().contains("silos[0].id_style"), "{err}");
}
