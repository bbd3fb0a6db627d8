//! The person-level model: true demographics of each synthetic person and the
//! relations (household, twin, junior/senior, same common name) that make some of
//! them look alike. Nothing here knows about silos or noise: renderers turn a
//! [`Person`] into silo records, and [`crate::population`] generates people.

use std::fmt;

/// The year "today" is in, fixed so that output never depends on the clock.
pub const REFERENCE_YEAR: u16 = 2025;

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, e.g. 1984.
    pub year: u16,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
}

impl Date {
    /// Days in a month of the Gregorian calendar.
    pub fn days_in_month(year: u16, month: u8) -> u8 {
        match month {
            4 | 6 | 9 | 11 => 30,
            2 if (year.is_multiple_of(4) && !year.is_multiple_of(100))
                || year.is_multiple_of(400) =>
            {
                29
            }
            2 => 28,
            _ => 31,
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// True administrative sex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sex {
    /// Male.
    Male,
    /// Female.
    Female,
    /// Other.
    Other,
}

impl Sex {
    /// The lowercase FHIR code: `male`, `female`, `other`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Male => "male",
            Self::Female => "female",
            Self::Other => "other",
        }
    }
}

/// Junior or senior, for a father and son who share their full name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// The father.
    Senior,
    /// The son.
    Junior,
}

/// A US street address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// House number.
    pub number: u32,
    /// Street name without suffix (`Main`, `Martin Luther King Jr`).
    pub street: &'static str,
    /// Suffix as (USPS abbreviation, long form): (`St`, `Street`).
    pub suffix: (&'static str, &'static str),
    /// Apartment or unit designator and number (`Apt 4B`), if any.
    pub unit: Option<String>,
    /// City.
    pub city: &'static str,
    /// Two-letter state (or territory) code.
    pub state: &'static str,
    /// Five-digit ZIP code, inside the city's range.
    pub postal_code: u32,
}

/// A ten-digit North American phone number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Phone {
    /// Area code.
    pub area: u16,
    /// Exchange (central office) code.
    pub exchange: u16,
    /// Line number, 0 to 9999.
    pub line: u16,
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}-{:03}-{:04}", self.area, self.exchange, self.line)
    }
}

/// A social security number, unique per person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ssn {
    /// Area number, 1 to 899, never 666.
    pub area: u16,
    /// Group number, 1 to 99.
    pub group: u8,
    /// Serial number, 1 to 9999.
    pub serial: u16,
}

impl fmt::Display for Ssn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}-{:02}-{:04}", self.area, self.group, self.serial)
    }
}

/// How a person is related to another person of the population.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// Twin of the person with this id.
    TwinOf(u64),
    /// Father (senior) of the junior with this id.
    SeniorOf(u64),
    /// Son (junior) of the senior with this id.
    JuniorOf(u64),
    /// Spouse of the person with this id.
    SpouseOf(u64),
    /// Child of the person with this id.
    ChildOf(u64),
    /// Unrelated, but has exactly the same common name as the person with this id.
    SameNameAs(u64),
}

/// One synthetic person's true demographics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The true identity, 0-based and dense; it appears only in the truth output.
    pub id: u64,
    /// Formal given name.
    pub given_name: &'static str,
    /// Middle name, if the person has one.
    pub middle_name: Option<&'static str>,
    /// Current legal family name (may be multi-part or hyphenated).
    pub family_name: String,
    /// Family name at birth, when it differs from the current one (marriage).
    pub maiden_name: Option<String>,
    /// Junior or senior, if the person shares the full name of a father or son.
    pub generation: Option<Generation>,
    /// Administrative sex.
    pub sex: Sex,
    /// Date of birth.
    pub birth_date: Date,
    /// Current address.
    pub address: Address,
    /// Address before the last move, if the person moved.
    pub previous_address: Option<Address>,
    /// The phone the person gives (shared with the household for some).
    pub phone: Phone,
    /// A second (home or work) phone some silos have instead, if any.
    pub secondary_phone: Option<Phone>,
    /// Email address; empty for young children without one.
    pub email: String,
    /// Social security number.
    pub ssn: Ssn,
    /// Household: people living at the same address share it.
    pub household_id: u64,
    /// Relations that make this person look like someone else.
    pub relations: Vec<Relation>,
}

impl Person {
    /// Age in whole years on 1 July of [`REFERENCE_YEAR`] (approximately).
    pub fn age(&self) -> u16 {
        REFERENCE_YEAR.saturating_sub(self.birth_date.year)
    }
}

/// Counts of the hard cases actually generated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrapCounts {
    /// Twin pairs.
    pub twin_pairs: usize,
    /// Father/son pairs with the same full name.
    pub junior_senior_pairs: usize,
    /// Households of two or more people (a couple and children).
    pub households: usize,
    /// People living in those households.
    pub household_members: usize,
    /// Groups of unrelated people sharing one common name.
    pub common_name_groups: usize,
    /// People in those groups.
    pub common_name_people: usize,
    /// Women whose family name changed by marriage.
    pub name_changes: usize,
    /// People with a previous address.
    pub moved: usize,
}
