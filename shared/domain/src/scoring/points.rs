//! [`Points`]: a score value with two decimal places, exact under addition.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Neg, Sub};

use serde::{Deserialize, Serialize};

/// The largest magnitude a configured number of points may have.
pub const MAX_POINTS: f64 = 1_000_000.0;

/// A number of points with two decimal places, kept as a whole number of hundredths so that sums
/// are exact: the contributions of a score add up to the score to the last digit.
///
/// In JSON and YAML it is a plain number (`15`, `-2.5`, `12.34`). A configured value may have at
/// most two decimal places and a magnitude of at most [`MAX_POINTS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Points(i64);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PointsError {
    #[error("must be a finite number, not {0}")]
    NotFinite(f64),
    #[error("must be between -{MAX_POINTS} and {MAX_POINTS}, not {0}")]
    OutOfRange(f64),
    #[error("may have at most two decimal places, not {0}")]
    TooPrecise(f64),
}

impl Points {
    pub const ZERO: Points = Points(0);

    /// Points from a whole number of hundredths.
    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    /// A configured value: finite, within [`MAX_POINTS`], at most two decimal places.
    pub fn parse(value: f64) -> Result<Self, PointsError> {
        if !value.is_finite() {
            return Err(PointsError::NotFinite(value));
        }
        if value.abs() > MAX_POINTS {
            return Err(PointsError::OutOfRange(value));
        }
        let scaled = value * 100.0;
        if (scaled - scaled.round()).abs() > 1e-6 {
            return Err(PointsError::TooPrecise(value));
        }
        Ok(Self(scaled.round() as i64))
    }

    /// The nearest value with two decimal places (halves away from zero). Not-a-number is zero;
    /// infinities saturate.
    pub fn round(value: f64) -> Self {
        if value.is_nan() {
            return Self::ZERO;
        }
        // `as` saturates at the bounds of i64.
        Self((value * 100.0).round() as i64)
    }

    /// The value in hundredths.
    pub const fn cents(self) -> i64 {
        self.0
    }

    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }

    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub const fn abs(self) -> Self {
        Self(self.0.saturating_abs())
    }
}

impl fmt::Display for Points {
    /// `12.50`, `-3.00`: always two decimal places.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Add for Points {
    type Output = Points;
    fn add(self, rhs: Points) -> Points {
        Points(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Points {
    fn add_assign(&mut self, rhs: Points) {
        *self = *self + rhs;
    }
}

impl Sub for Points {
    type Output = Points;
    fn sub(self, rhs: Points) -> Points {
        Points(self.0.saturating_sub(rhs.0))
    }
}

impl Neg for Points {
    type Output = Points;
    fn neg(self) -> Points {
        Points(self.0.saturating_neg())
    }
}

impl Mul<u32> for Points {
    type Output = Points;
    fn mul(self, rhs: u32) -> Points {
        Points(self.0.saturating_mul(i64::from(rhs)))
    }
}

impl Sum for Points {
    fn sum<I: Iterator<Item = Points>>(iter: I) -> Points {
        iter.fold(Points::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Points> for Points {
    fn sum<I: Iterator<Item = &'a Points>>(iter: I) -> Points {
        iter.copied().sum()
    }
}

impl Serialize for Points {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            s.serialize_i64(self.0 / 100)
        } else {
            s.serialize_f64(self.as_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Points {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::de::num_then(d, Points::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_configured_values() {
        assert_eq!(Points::parse(15.0).unwrap().cents(), 1500);
        assert_eq!(Points::parse(-2.5).unwrap().cents(), -250);
        assert_eq!(Points::parse(0.1).unwrap().cents(), 10);
        assert_eq!(Points::parse(12.34).unwrap().cents(), 1234);
        assert!(matches!(
            Points::parse(1.234),
            Err(PointsError::TooPrecise(_))
        ));
        assert!(matches!(
            Points::parse(f64::NAN),
            Err(PointsError::NotFinite(_))
        ));
        assert!(matches!(
            Points::parse(2e6),
            Err(PointsError::OutOfRange(_))
        ));
    }

    #[test]
    fn displays_and_serialises() {
        assert_eq!(Points::from_cents(1250).to_string(), "12.50");
        assert_eq!(Points::from_cents(-5).to_string(), "-0.05");
        assert_eq!(Points::from_cents(-300).to_string(), "-3.00");
        assert_eq!(
            serde_json::to_string(&Points::from_cents(1500)).unwrap(),
            "15"
        );
        assert_eq!(
            serde_json::to_string(&Points::from_cents(1234)).unwrap(),
            "12.34"
        );
        let back: Points = serde_json::from_str("12.34").unwrap();
        assert_eq!(back, Points::from_cents(1234));
        let back: Points = serde_json::from_str("-7").unwrap();
        assert_eq!(back, Points::from_cents(-700));
    }

    proptest! {
        #[test]
        fn json_round_trip(cents in -100_000_000i64..100_000_000) {
            let p = Points::from_cents(cents);
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<Points>(&json).unwrap(), p);
        }

        #[test]
        fn rounding_is_monotone(a in -1e7f64..1e7, b in -1e7f64..1e7) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(Points::round(lo) <= Points::round(hi));
        }
    }
}
