//! [`Population`]: a deterministic stream of [`Person`]s, generated a household
//! (or trap group) at a time from the embedded frequency tables.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::config::{NoiseRates, SynthConfig, TrapRates};
use crate::person::{
    Address, Date, Generation, Person, Phone, REFERENCE_YEAR, Relation, Sex, Ssn, TrapCounts,
};
use crate::tables::{self, City, Weighted};

#[derive(Debug, Clone, Copy)]
enum Unit {
    Single,
    Twins,
    JuniorSenior,
    Household,
    CommonName,
}

/// A deterministic stream of people, generated a household (or trap group) at a
/// time; memory stays bounded apart from the sets that keep SSNs and emails
/// unique.
#[derive(Debug)]
pub struct Population {
    rng: ChaCha8Rng,
    traps: TrapRates,
    noise: NoiseRates,
    tables: Tables,
    people_left: usize,
    next_id: u64,
    twins_left: usize,
    junior_senior_left: usize,
    households_left: usize,
    common_left: usize,
    queue: VecDeque<Person>,
    ssns: HashSet<u32>,
    emails: HashSet<u64>,
    counts: TrapCounts,
}

#[derive(Debug)]
struct Tables {
    surnames: Weighted<&'static str>,
    male: Weighted<&'static str>,
    female: Weighted<&'static str>,
    hispanic_male: Weighted<&'static str>,
    hispanic_female: Weighted<&'static str>,
    cities: Weighted<City>,
    streets: Weighted<&'static str>,
    suffixes: Weighted<(&'static str, &'static str)>,
    domains: Weighted<&'static str>,
}

/// Given names that sound or look alike, for twins: (name, sex, name, sex).
static SIMILAR_TWIN_NAMES: &[(&str, Sex, &str, Sex)] = &[
    ("Jon", Sex::Male, "Joan", Sex::Female),
    ("Daniel", Sex::Male, "Danielle", Sex::Female),
    ("Michael", Sex::Male, "Michelle", Sex::Female),
    ("Christian", Sex::Male, "Christina", Sex::Female),
    ("Eric", Sex::Male, "Erica", Sex::Female),
    ("Aaron", Sex::Male, "Erin", Sex::Female),
    ("Brian", Sex::Male, "Bryan", Sex::Male),
    ("Mark", Sex::Male, "Marc", Sex::Male),
    ("Jayden", Sex::Male, "Jaden", Sex::Male),
    ("Sara", Sex::Female, "Sarah", Sex::Female),
    ("Ashley", Sex::Female, "Ashlee", Sex::Female),
    ("Kayla", Sex::Female, "Kyla", Sex::Female),
    ("Emma", Sex::Female, "Emily", Sex::Female),
];

impl Population {
    /// The people of `config`, seeded by `config.seed`.
    pub fn new(config: &SynthConfig) -> Self {
        let people = config.people;
        let count = |rate: f64| (people as f64 * rate.clamp(0.0, 1.0)).round() as usize;
        Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x0005_eed0_f9e0_91e5),
            traps: config.traps,
            noise: config.noise,
            tables: Tables {
                surnames: Weighted::new(tables::SURNAMES),
                male: Weighted::new(tables::MALE_GIVEN),
                female: Weighted::new(tables::FEMALE_GIVEN),
                hispanic_male: Weighted::new(tables::HISPANIC_MALE_GIVEN),
                hispanic_female: Weighted::new(tables::HISPANIC_FEMALE_GIVEN),
                cities: Weighted::new(tables::CITIES),
                streets: Weighted::new(tables::STREETS),
                suffixes: Weighted::new(tables::STREET_SUFFIXES),
                domains: Weighted::new(tables::EMAIL_DOMAINS),
            },
            people_left: people,
            next_id: 0,
            twins_left: count(config.traps.twins),
            junior_senior_left: count(config.traps.junior_senior),
            households_left: count(config.traps.households),
            common_left: count(config.traps.common_names),
            queue: VecDeque::new(),
            ssns: HashSet::new(),
            emails: HashSet::new(),
            counts: TrapCounts::default(),
        }
    }

    /// The hard cases generated so far.
    pub fn trap_counts(&self) -> &TrapCounts {
        &self.counts
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random::<f64>() < p
    }

    fn next_unit(&mut self) -> Unit {
        let trap_people = 2 * (self.twins_left + self.junior_senior_left)
            + self.common_left * 5 / 2
            + self.households_left * 7 / 2;
        let singles = self.people_left.saturating_sub(trap_people);
        let weights = [
            (Unit::Single, singles),
            (Unit::Twins, self.twins_left),
            (Unit::JuniorSenior, self.junior_senior_left),
            (Unit::Household, self.households_left),
            (Unit::CommonName, self.common_left),
        ];
        let total: usize = weights.iter().map(|(_, w)| w).sum();
        if total == 0 || self.people_left < 2 {
            return Unit::Single;
        }
        let mut x = self.rng.random_range(0..total);
        for (unit, w) in weights {
            if x < w {
                return unit;
            }
            x -= w;
        }
        Unit::Single
    }

    fn fill(&mut self) {
        let household = self.next_id;
        let unit = self.next_unit();
        let mut group = match unit {
            Unit::Single => vec![self.single()],
            Unit::Twins => {
                self.twins_left -= 1;
                self.counts.twin_pairs += 1;
                self.twins()
            }
            Unit::JuniorSenior => {
                self.junior_senior_left -= 1;
                self.counts.junior_senior_pairs += 1;
                self.junior_senior()
            }
            Unit::Household => {
                self.households_left -= 1;
                let members = self.household();
                self.counts.households += 1;
                self.counts.household_members += members.len();
                members
            }
            Unit::CommonName => {
                self.common_left -= 1;
                let members = self.common_name();
                self.counts.common_name_groups += 1;
                self.counts.common_name_people += members.len();
                members
            }
        };
        group.truncate(self.people_left);
        self.people_left -= group.len();
        for p in &mut group {
            if !matches!(unit, Unit::CommonName) {
                p.household_id = household;
            }
            if p.maiden_name.is_some() {
                self.counts.name_changes += 1;
            }
            if p.previous_address.is_some() {
                self.counts.moved += 1;
            }
        }
        self.queue.extend(group);
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn draw_sex(&mut self) -> Sex {
        match self.rng.random_range(0..1000) {
            0..495 => Sex::Male,
            495..995 => Sex::Female,
            _ => Sex::Other,
        }
    }

    fn given_for(&mut self, sex: Sex, family: &str) -> &'static str {
        let female = match sex {
            Sex::Male => false,
            Sex::Female => true,
            Sex::Other => self.rng.random_bool(0.5),
        };
        if tables::is_hispanic_surname(family) && self.chance(0.6) {
            if female {
                self.tables.hispanic_female.sample(&mut self.rng)
            } else {
                self.tables.hispanic_male.sample(&mut self.rng)
            }
        } else if female {
            self.tables.female.sample(&mut self.rng)
        } else {
            self.tables.male.sample(&mut self.rng)
        }
    }

    fn middle_for(&mut self, sex: Sex, given: &str, family: &str) -> Option<&'static str> {
        if !self.chance(0.6) {
            return None;
        }
        let middle = self.given_for(sex, family);
        (middle != given).then_some(middle)
    }

    fn birth_date(&mut self, year_lo: u16, year_hi: u16) -> Date {
        let year = self.rng.random_range(year_lo..=year_hi.max(year_lo));
        let month = self.rng.random_range(1..=12u8);
        let day = self.rng.random_range(1..=Date::days_in_month(year, month));
        Date { year, month, day }
    }

    fn adult_birth_date(&mut self) -> Date {
        // Skewed toward middle age: the mean of two uniform draws.
        let a = self.rng.random_range(1935..=2006u16);
        let b = self.rng.random_range(1935..=2006u16);
        let year = a.midpoint(b);
        self.birth_date(year, year)
    }

    fn address(&mut self) -> Address {
        let city = self.tables.cities.sample(&mut self.rng);
        self.address_in(city)
    }

    fn address_in(&mut self, city: City) -> Address {
        let number = match self.rng.random_range(0..10) {
            0..5 => self.rng.random_range(1..1000),
            5..9 => self.rng.random_range(1000..10000),
            _ => self.rng.random_range(10000..40000),
        };
        let unit = self.chance(0.15).then(|| {
            let n = self.rng.random_range(1..40u32);
            match self.rng.random_range(0..4) {
                0 => format!("Apt {n}"),
                1 => format!("Apt {n}{}", (b'A' + self.rng.random_range(0..4u8)) as char),
                2 => format!("Unit {n}"),
                _ => format!("Ste {}", n * 100 + self.rng.random_range(1..20)),
            }
        });
        Address {
            number,
            street: self.tables.streets.sample(&mut self.rng),
            suffix: self.tables.suffixes.sample(&mut self.rng),
            unit,
            city: city.name,
            state: city.state,
            postal_code: self.rng.random_range(city.zip_lo..=city.zip_hi),
        }
    }

    fn previous_address(&mut self, current: &Address) -> Option<Address> {
        if !self.chance(self.noise.moved) {
            return None;
        }
        let same_city = tables::CITIES
            .iter()
            .map(|(c, _)| *c)
            .find(|c| c.name == current.city && c.state == current.state);
        match same_city {
            Some(city) if self.chance(0.6) => Some(self.address_in(city)),
            _ => Some(self.address()),
        }
    }

    fn phone_near(&mut self, address: &Address) -> Phone {
        let area = tables::CITIES
            .iter()
            .find(|(c, _)| c.name == address.city && c.state == address.state)
            .map_or(555, |(c, _)| {
                c.area_codes[self.rng.random_range(0..c.area_codes.len())]
            });
        Phone {
            area,
            exchange: self.rng.random_range(201..1000),
            line: self.rng.random_range(0..10000),
        }
    }

    fn ssn(&mut self) -> Ssn {
        loop {
            let mut area = self.rng.random_range(1..900u16);
            if area == 666 {
                area = 667;
            }
            let ssn = Ssn {
                area,
                group: self.rng.random_range(1..100),
                serial: self.rng.random_range(1..10000),
            };
            let key = u32::from(ssn.area) * 1_000_000
                + u32::from(ssn.group) * 10_000
                + u32::from(ssn.serial);
            if self.ssns.insert(key) {
                return ssn;
            }
        }
    }

    /// An email pattern and domain, so that twins can share the pattern.
    fn email_style(&mut self) -> (u8, &'static str) {
        (
            self.rng.random_range(0..8),
            self.tables.domains.sample(&mut self.rng),
        )
    }

    fn email(&mut self, given: &str, family: &str, birth: Date, style: (u8, &str)) -> String {
        let first = email_part(given);
        let last = email_part(family);
        let (pattern, domain) = style;
        let yy = birth.year % 100;
        let base = match pattern {
            0 | 1 => format!("{first}.{last}"),
            2 => format!("{first}{last}"),
            3 => format!("{}{last}", first.chars().next().unwrap_or('x')),
            4 => format!("{first}_{last}"),
            5 => format!("{first}.{last}{yy:02}"),
            6 => format!("{last}{}", first.chars().next().unwrap_or('x')),
            _ => format!("{first}{}", birth.year),
        };
        let mut candidate = format!("{base}@{domain}");
        let mut attempt = 0u32;
        while !self.emails.insert(hash_str(&candidate)) {
            attempt += 1;
            let n: u32 = if attempt < 4 {
                self.rng.random_range(1..100)
            } else {
                self.rng.random_range(100..100_000)
            };
            candidate = format!("{base}{n}@{domain}");
        }
        candidate
    }

    fn person(&mut self, sex: Sex, family: String, birth_date: Date, address: Address) -> Person {
        let given_name = self.given_for(sex, &family);
        let middle_name = self.middle_for(sex, given_name, &family);
        let previous_address = self.previous_address(&address);
        let phone = self.phone_near(previous_address.as_ref().unwrap_or(&address));
        let secondary_phone = (birth_date.year + 18 <= REFERENCE_YEAR && self.chance(0.4))
            .then(|| self.phone_near(&address));
        let style = self.email_style();
        let email = if birth_date.year + 13 <= REFERENCE_YEAR {
            self.email(given_name, &family, birth_date, style)
        } else {
            String::new()
        };
        let ssn = self.ssn();
        Person {
            id: self.alloc_id(),
            given_name,
            middle_name,
            family_name: family,
            maiden_name: None,
            generation: None,
            sex,
            birth_date,
            address,
            previous_address,
            phone,
            secondary_phone,
            email,
            ssn,
            household_id: 0,
            relations: Vec::new(),
        }
    }

    fn single(&mut self) -> Person {
        let sex = self.draw_sex();
        let family = self.tables.surnames.sample(&mut self.rng).to_owned();
        let birth = if self.chance(0.15) {
            self.birth_date(2008, REFERENCE_YEAR - 1)
        } else {
            self.adult_birth_date()
        };
        let address = self.address();
        let mut p = self.person(sex, family, birth, address);
        // Some adult women living alone changed their name at a marriage.
        if p.sex == Sex::Female && p.age() >= 25 && self.chance(0.3) {
            p.maiden_name = Some(self.tables.surnames.sample(&mut self.rng).to_owned());
        }
        p
    }

    fn twins(&mut self) -> Vec<Person> {
        let family = self.tables.surnames.sample(&mut self.rng).to_owned();
        let birth = self.birth_date(1940, REFERENCE_YEAR - 1);
        let address = self.address();
        let mut a = self.person(Sex::Male, family.clone(), birth, address.clone());
        let mut b = self.person(Sex::Female, family, birth, address);
        if self.chance(0.35) {
            let (na, sa, nb, sb) =
                SIMILAR_TWIN_NAMES[self.rng.random_range(0..SIMILAR_TWIN_NAMES.len())];
            (a.given_name, a.sex, b.given_name, b.sex) = (na, sa, nb, sb);
        } else {
            a.sex = self.draw_sex();
            b.sex = if self.chance(0.5) {
                a.sex
            } else {
                self.draw_sex()
            };
            a.given_name = self.given_for(a.sex, &a.family_name);
            b.given_name = self.given_for(b.sex, &b.family_name);
            while b.given_name == a.given_name {
                b.given_name = self.given_for(b.sex, &b.family_name);
            }
        }
        a.middle_name = self.middle_for(a.sex, a.given_name, &a.family_name);
        b.middle_name = self.middle_for(b.sex, b.given_name, &b.family_name);
        b.phone = a.phone;
        b.previous_address.clone_from(&a.previous_address);
        // Same pattern and domain, each twin's own given name.
        if !a.email.is_empty() {
            let style = self.email_style();
            self.emails.remove(&hash_str(&a.email));
            self.emails.remove(&hash_str(&b.email));
            a.email = self.email(a.given_name, &a.family_name, birth, style);
            b.email = self.email(b.given_name, &b.family_name, birth, style);
        }
        a.relations.push(Relation::TwinOf(b.id));
        b.relations.push(Relation::TwinOf(a.id));
        vec![a, b]
    }

    fn junior_senior(&mut self) -> Vec<Person> {
        let family = self.tables.surnames.sample(&mut self.rng).to_owned();
        let father_birth = self.birth_date(1935, 1982);
        let gap = self.rng.random_range(20..=45u16);
        let son_birth = self.birth_date(
            (father_birth.year + gap).min(REFERENCE_YEAR - 1),
            (father_birth.year + gap).min(REFERENCE_YEAR - 1),
        );
        let address = self.address();
        let mut senior = self.person(Sex::Male, family.clone(), father_birth, address.clone());
        let mut junior = self.person(Sex::Male, family, son_birth, address);
        junior.given_name = senior.given_name;
        junior.middle_name = senior.middle_name;
        junior.phone = senior.phone;
        junior.previous_address.clone_from(&senior.previous_address);
        senior.generation = Some(Generation::Senior);
        junior.generation = Some(Generation::Junior);
        senior.relations.push(Relation::SeniorOf(junior.id));
        junior.relations.push(Relation::JuniorOf(senior.id));
        vec![senior, junior]
    }

    fn household(&mut self) -> Vec<Person> {
        let family = self.tables.surnames.sample(&mut self.rng).to_owned();
        let address = self.address();
        let first_birth = self.birth_date(1945, 1998);
        // A man and a woman, or (4%) a same-sex couple; the second spouse is the
        // one who may have changed name at marriage.
        let (first_sex, second_sex) = if self.chance(0.04) {
            let s = if self.chance(0.5) {
                Sex::Male
            } else {
                Sex::Female
            };
            (s, s)
        } else {
            (Sex::Male, Sex::Female)
        };
        let offset = self.rng.random_range(0..=12u16);
        let second_year = (first_birth.year + offset).saturating_sub(6).min(2000);
        let second_birth = self.birth_date(second_year, second_year);
        let mut a = self.person(first_sex, family.clone(), first_birth, address.clone());
        let mut b = self.person(second_sex, family.clone(), second_birth, address.clone());
        b.previous_address.clone_from(&a.previous_address);
        if self.chance(0.8) {
            let maiden = self.tables.surnames.sample(&mut self.rng).to_owned();
            if maiden != family {
                if self.chance(0.12) {
                    b.family_name = format!("{maiden}-{family}");
                }
                b.maiden_name = Some(maiden);
            }
        } else {
            // Kept their own name (and an email made from it).
            b.family_name = self.tables.surnames.sample(&mut self.rng).to_owned();
            self.emails.remove(&hash_str(&b.email));
            let style = self.email_style();
            b.email = self.email(b.given_name, &b.family_name, second_birth, style);
        }
        let landline = self.chance(0.6);
        if landline {
            b.phone = a.phone;
        }
        if self.chance(self.traps.shared_email) && !a.email.is_empty() {
            b.email.clone_from(&a.email);
        }
        a.relations.push(Relation::SpouseOf(b.id));
        b.relations.push(Relation::SpouseOf(a.id));
        let mut members = vec![a, b];
        self.children(&mut members, &family, &address, landline);
        members
    }

    /// Zero to three children of the couple `members[0..2]`, at their address.
    fn children(
        &mut self,
        members: &mut Vec<Person>,
        family: &str,
        address: &Address,
        landline: bool,
    ) {
        let children = match self.rng.random_range(0..20) {
            0..5 => 0,
            5..11 => 1,
            11..17 => 2,
            _ => 3,
        };
        let young_parent = members[0].birth_date.year.max(members[1].birth_date.year);
        let lo = young_parent + 20;
        let hi = (young_parent + 42).min(REFERENCE_YEAR - 1);
        if lo > hi {
            return;
        }
        for _ in 0..children {
            let birth = self.birth_date(lo, hi);
            let sex = self.draw_sex();
            let mut child = self.person(sex, family.to_owned(), birth, address.clone());
            child
                .previous_address
                .clone_from(&members[0].previous_address);
            if child.age() < 16 || landline {
                child.phone = members[0].phone;
            }
            // Young children's records often carry a parent's email.
            if child.email.is_empty() && self.chance(0.5) {
                child.email.clone_from(&members[0].email);
            }
            child.relations.push(Relation::ChildOf(members[0].id));
            child.relations.push(Relation::ChildOf(members[1].id));
            members.push(child);
        }
    }

    fn common_name(&mut self) -> Vec<Person> {
        let sex = if self.chance(0.5) {
            Sex::Male
        } else {
            Sex::Female
        };
        let given = match sex {
            Sex::Female => self.tables.female.top(&mut self.rng, 8),
            _ => self.tables.male.top(&mut self.rng, 8),
        };
        let family = self.tables.surnames.top(&mut self.rng, 12);
        let size = if self.chance(0.5) { 2 } else { 3 };
        let first_birth = self.adult_birth_date();
        let mut members: Vec<Person> = Vec::with_capacity(size);
        for i in 0..size {
            let birth = match (i, self.rng.random_range(0..10)) {
                (0, _) => first_birth,
                (_, 0..3) => first_birth,
                (_, 3..7) => self.birth_date(first_birth.year, first_birth.year),
                _ => self.adult_birth_date(),
            };
            let mut address = self.address();
            while members.iter().any(|m| m.address.city == address.city) {
                address = self.address();
            }
            let mut p = self.person(sex, family.to_owned(), birth, address);
            p.given_name = given;
            p.middle_name = self.middle_for(sex, given, family);
            self.emails.remove(&hash_str(&p.email));
            let style = self.email_style();
            p.email = self.email(given, family, birth, style);
            p.household_id = p.id;
            for m in &mut members {
                m.relations.push(Relation::SameNameAs(p.id));
                p.relations.push(Relation::SameNameAs(m.id));
            }
            members.push(p);
        }
        members
    }
}

impl Iterator for Population {
    type Item = Person;

    fn next(&mut self) -> Option<Person> {
        while self.queue.is_empty() {
            if self.people_left == 0 {
                return None;
            }
            self.fill();
        }
        self.queue.pop_front()
    }
}

/// A name reduced to what email local parts carry: ASCII letters, lowercase.
fn email_part(name: &str) -> String {
    tables::fold_ascii(name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn hash_str(s: &str) -> u64 {
    // DefaultHasher::new() uses fixed keys, so this is deterministic.
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}
