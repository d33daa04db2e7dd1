//! Parsers of numeric flags that check their range, so that a bad value is refused before
//! any work with clap's message naming the flag: `invalid value 'NaN' for '--learning-rate
//! <LEARNING_RATE>': must be a finite number above 0`.

/// A finite number above 0 (a learning rate).
pub fn positive(text: &str) -> Result<f32, String> {
    let value = number(text)?;
    if value > 0.0 {
        Ok(value)
    } else {
        Err("must be a finite number above 0".into())
    }
}

/// A finite number of at least 0 (a weight decay).
pub fn non_negative(text: &str) -> Result<f32, String> {
    let value = number(text)?;
    if value >= 0.0 {
        Ok(value)
    } else {
        Err("must be a finite number of at least 0".into())
    }
}

/// A probability in [0, 1) (denoising, momentum).
pub fn probability(text: &str) -> Result<f32, String> {
    let value = number(text)?;
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err("must be in [0, 1)".into())
    }
}

/// A share in (0, 1) (the share of a user's items held out).
pub fn fraction(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| "not a number".to_string())?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err("must be above 0 and below 1".into())
    }
}

/// Any finite number (a rating threshold).
pub fn number(text: &str) -> Result<f32, String> {
    let value: f32 = text
        .trim()
        .parse()
        .map_err(|_| "not a number".to_string())?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err("must be a finite number".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        assert_eq!(positive("0.01"), Ok(0.01));
        for bad in ["0", "-1", "NaN", "inf", "1e39", "x"] {
            assert!(positive(bad).is_err(), "{bad}");
        }
        assert_eq!(non_negative("0"), Ok(0.0));
        assert!(non_negative("-0.1").is_err());
        assert_eq!(probability("0"), Ok(0.0));
        assert_eq!(probability("0.5"), Ok(0.5));
        for bad in ["1", "2", "-0.5", "NaN"] {
            assert!(probability(bad).is_err(), "{bad}");
        }
        assert_eq!(fraction("0.2"), Ok(0.2));
        for bad in ["0", "1", "NaN"] {
            assert!(fraction(bad).is_err(), "{bad}");
        }
        assert_eq!(number("3.5"), Ok(3.5));
        assert_eq!(number("NaN"), Err("must be a finite number".into()));
    }
}
