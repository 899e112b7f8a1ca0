//! Who an account is ([`Profile`], the same every month) and where it stands at a cycle's
//! end ([`Cycle`], drawn per month unless a month's postings decide it).

use chrono::NaiveDate;

use super::{Salt, account_rng, text_hash};

/// A state, the zip code prefixes of its addresses and some of its cities.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) code: &'static str,
    /// First three digits of its zip codes, inclusive.
    pub(crate) zip3: (u32, u32),
    pub(crate) cities: &'static [&'static str],
}

pub(crate) const STATES: &[State] = &[
    State {
        code: "NY",
        zip3: (100, 149),
        cities: &["NEW YORK", "BUFFALO", "ROCHESTER", "ALBANY"],
    },
    State {
        code: "CA",
        zip3: (900, 961),
        cities: &["LOS ANGELES", "SAN DIEGO", "SAN JOSE", "FRESNO"],
    },
    State {
        code: "TX",
        zip3: (750, 799),
        cities: &["HOUSTON", "DALLAS", "AUSTIN", "EL PASO"],
    },
    State {
        code: "FL",
        zip3: (320, 349),
        cities: &["MIAMI", "TAMPA", "ORLANDO", "JACKSONVILLE"],
    },
    State {
        code: "IL",
        zip3: (600, 629),
        cities: &["CHICAGO", "AURORA", "NAPERVILLE", "PEORIA"],
    },
    State {
        code: "PA",
        zip3: (150, 196),
        cities: &["PHILADELPHIA", "PITTSBURGH", "ALLENTOWN", "ERIE"],
    },
    State {
        code: "OH",
        zip3: (430, 458),
        cities: &["COLUMBUS", "CLEVELAND", "CINCINNATI", "TOLEDO"],
    },
    State {
        code: "GA",
        zip3: (300, 319),
        cities: &["ATLANTA", "SAVANNAH", "AUGUSTA", "MACON"],
    },
    State {
        code: "NC",
        zip3: (270, 289),
        cities: &["CHARLOTTE", "RALEIGH", "GREENSBORO", "DURHAM"],
    },
    State {
        code: "MI",
        zip3: (480, 499),
        cities: &["DETROIT", "GRAND RAPIDS", "LANSING", "ANN ARBOR"],
    },
];

const SURNAMES: &[&str] = &[
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "JONES",
    "GARCIA",
    "MILLER",
    "DAVIS",
    "RODRIGUEZ",
    "MARTINEZ",
    "HERNANDEZ",
    "LOPEZ",
    "GONZALEZ",
    "WILSON",
    "ANDERSON",
    "THOMAS",
    "TAYLOR",
    "MOORE",
    "JACKSON",
    "MARTIN",
    "LEE",
    "PEREZ",
    "THOMPSON",
    "WHITE",
    "HARRIS",
    "SANCHEZ",
    "CLARK",
    "RAMIREZ",
    "LEWIS",
    "ROBINSON",
    "NGUYEN",
    "O'BRIEN",
    "SMITH-JONES",
    "KOWALSKI",
    "MULLER",
    "PATEL",
    "KIM",
    "CHEN",
];

const FIRST_NAMES: &[&str] = &[
    "JAMES",
    "MARY",
    "ROBERT",
    "PATRICIA",
    "JOHN",
    "JENNIFER",
    "MICHAEL",
    "LINDA",
    "DAVID",
    "ELIZABETH",
    "WILLIAM",
    "BARBARA",
    "RICHARD",
    "SUSAN",
    "JOSEPH",
    "JESSICA",
    "THOMAS",
    "SARAH",
    "CHRISTOPHER",
    "KAREN",
    "DANIEL",
    "LISA",
    "MATTHEW",
    "NANCY",
    "ANTHONY",
    "BETTY",
    "MARK",
    "SANDRA",
    "JOSE",
    "MARIA",
    "WEI",
    "PRIYA",
    "AHMED",
    "FATIMA",
];

const STREETS: &[&str] = &[
    "MAIN",
    "OAK",
    "PINE",
    "MAPLE",
    "CEDAR",
    "ELM",
    "WASHINGTON",
    "LAKE",
    "HILL",
    "PARK",
    "FIRST",
    "SECOND",
    "THIRD",
    "LINCOLN",
    "JACKSON",
    "MADISON",
    "RIVER",
    "SUNSET",
];

const STREET_KINDS: &[&str] = &["ST", "AVE", "RD", "DR", "LN", "BLVD", "CT", "WAY"];

/// A person named on an account.
#[derive(Clone, Debug)]
pub(crate) struct Person {
    pub(crate) surname: &'static str,
    pub(crate) first_name: &'static str,
    /// A middle initial, or none.
    pub(crate) middle_initial: Option<char>,
    /// The last six digits of a social security number whose area is 666, which is never
    /// issued: the numbers look real and can belong to nobody.
    pub(crate) ssn_serial: u32,
    pub(crate) birth: NaiveDate,
    /// The last two digits of a 555-01XX number, the range kept for fiction.
    pub(crate) phone_line: u32,
    pub(crate) area_code: u32,
}

impl Person {
    fn draw(rng: &mut fastrand::Rng) -> Person {
        Person {
            surname: SURNAMES[rng.usize(..SURNAMES.len())],
            first_name: FIRST_NAMES[rng.usize(..FIRST_NAMES.len())],
            middle_initial: (rng.u8(0..3) > 0).then(|| char::from(rng.u8(b'A'..=b'Z'))),
            ssn_serial: rng.u32(1..1_000_000),
            birth: NaiveDate::from_ymd_opt(rng.i32(1940..=2004), rng.u32(1..=12), rng.u32(1..=28))
                .expect("days 1-28 exist in every month"),
            phone_line: rng.u32(0..100),
            area_code: rng.u32(201..990),
        }
    }

    /// The social security number, nine digits.
    pub(crate) fn ssn(&self) -> String {
        format!("666{:06}", self.ssn_serial)
    }

    /// The telephone number, ten digits.
    pub(crate) fn telephone(&self) -> String {
        format!("{:03}55501{:02}", self.area_code, self.phone_line)
    }
}

/// A postal address.
#[derive(Clone, Debug)]
pub(crate) struct Address {
    pub(crate) number: u32,
    pub(crate) street: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) apartment: Option<u32>,
    pub(crate) city: &'static str,
    pub(crate) state: &'static State,
    pub(crate) zip: u32,
}

impl Address {
    fn draw(rng: &mut fastrand::Rng) -> Address {
        let state = &STATES[rng.usize(..STATES.len())];
        Address {
            number: rng.u32(1..9_999),
            street: STREETS[rng.usize(..STREETS.len())],
            kind: STREET_KINDS[rng.usize(..STREET_KINDS.len())],
            apartment: (rng.u8(0..4) == 0).then(|| rng.u32(1..40) * 10 + rng.u32(1..9)),
            city: state.cities[rng.usize(..state.cities.len())],
            state,
            zip: rng.u32(state.zip3.0..=state.zip3.1) * 100 + rng.u32(0..100),
        }
    }

    pub(crate) fn first_line(&self) -> String {
        format!("{} {} {}", self.number, self.street, self.kind)
    }

    pub(crate) fn second_line(&self) -> String {
        self.apartment.map_or(String::new(), |a| format!("APT {a}"))
    }
}

/// What does not change about an account from one month to the next.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub(crate) customer: u32,
    /// Y-14M credit card type (1 general purpose, 2 private label), sometimes not given.
    pub(crate) card_type: Option<u8>,
    /// Product code, sometimes not given.
    pub(crate) product: Option<u8>,
    pub(crate) holder: Person,
    pub(crate) address: Address,
    /// Opened before 2025, so before any cycle a sample reports on.
    pub(crate) opened: NaiveDate,
    /// Current credit limit, cents (whole hundreds of dollars).
    pub(crate) limit: i64,
    /// Credit limit at origination, cents; sometimes not given.
    pub(crate) original_limit: Option<i64>,
    /// A second person on the account: a joint holder at the same address (Metro 2 J1)
    /// or an authorised user at another (J2).
    pub(crate) associate: Option<Associate>,
}

#[derive(Clone, Debug)]
pub(crate) enum Associate {
    SameAddress(Person),
    OtherAddress(Person, Address),
}

impl Profile {
    pub(crate) fn of(seed: u64, index: usize) -> Profile {
        let mut rng = account_rng(seed, index, Salt::Profile, 0);
        // About one optional value in twenty is left empty.
        fn optional<T>(rng: &mut fastrand::Rng, v: T) -> Option<T> {
            (rng.u8(0..20) != 0).then_some(v)
        }
        let customer = rng.u32(..100_000_000);
        let card_type = rng.u8(1..=2);
        let card_type = optional(&mut rng, card_type);
        let product = rng.u8(1..=4);
        let product = optional(&mut rng, product);
        let holder = Person::draw(&mut rng);
        let address = Address::draw(&mut rng);
        let opened =
            NaiveDate::from_ymd_opt(rng.i32(2005..=2024), rng.u32(1..=12), rng.u32(1..=28))
                .expect("days 1-28 exist in every month");
        let limit = rng.i64(5..=250) * 10_000;
        let original_limit = limit - rng.i64(0..=limit / 20_000) * 10_000;
        let original_limit = optional(&mut rng, original_limit);
        let associate = match rng.u8(0..100) {
            0..=7 => Some(Associate::SameAddress(Person::draw(&mut rng))),
            8..=10 => Some(Associate::OtherAddress(
                Person::draw(&mut rng),
                Address::draw(&mut rng),
            )),
            _ => None,
        };
        Profile {
            customer,
            card_type,
            product,
            holder,
            address,
            opened,
            limit,
            original_limit,
            associate,
        }
    }
}

/// An account at one cycle's end. Money in cents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cycle {
    pub(crate) begin: i64,
    pub(crate) end: i64,
    pub(crate) minimum_due: i64,
    pub(crate) payment: i64,
    pub(crate) past_due: i64,
    pub(crate) days_past_due: u32,
}

impl Cycle {
    /// The account at the cycle ending `cycle_end` (as written, e.g. `2026-10-31`), drawn
    /// for this account and cycle alone: the snapshot of a month no postings decide.
    pub(crate) fn drawn(seed: u64, index: usize, cycle_end: &str, limit: i64) -> Cycle {
        let mut rng = account_rng(seed, index, Salt::Cycle, text_hash(cycle_end));
        // Some accounts are dormant: nothing owed, nothing paid.
        if rng.u8(0..100) < 5 {
            return Cycle::default();
        }
        let begin = rng.i64(0..=limit);
        let payment = rng.i64(0..=begin.max(1));
        let purchases = rng.i64(0..=limit / 4);
        let end = (begin - payment + purchases).max(0);
        let days_past_due = match rng.u8(0..100) {
            _ if end == 0 => 0,
            0..=89 => 0,
            90..=95 => 30,
            96..=98 => 60,
            _ => 90,
        };
        let past_due = if days_past_due > 0 {
            rng.i64(2_500..=50_000).min(end)
        } else {
            0
        };
        Cycle {
            begin,
            end,
            minimum_due: minimum_due(end),
            payment,
            past_due,
            days_past_due,
        }
    }
}

/// The minimum payment on a balance: 2 %, at least 25.00 (or all of a smaller balance).
pub(crate) fn minimum_due(balance: i64) -> i64 {
    if balance <= 0 {
        0
    } else {
        (balance / 50).max(2_500.min(balance))
    }
}
