//! Input rules for users, shared by registration, the bootstrap admin and admin edits.

use platform::Validator;

pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const NAME_MAX: usize = 100;
pub const EMAIL_MAX: usize = 254;

/// A plausible address: one `@`, a non-empty local part, a dotted domain, no spaces or controls.
/// Deliverability is proven by verification mail, not by a regex.
pub fn email_is_valid(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.chars().count() <= EMAIL_MAX
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn check_email(v: &mut Validator, email: &str) {
    v.check(
        email_is_valid(email),
        "email",
        "must be an email address of at most 254 characters",
    );
}

pub fn check_password(v: &mut Validator, password: &str) {
    let n = password.chars().count();
    v.check(
        (PASSWORD_MIN..=PASSWORD_MAX).contains(&n),
        "password",
        "must be between 8 and 128 characters",
    );
}

pub fn check_name(v: &mut Validator, name: &str) {
    let n = name.chars().count();
    v.check(
        (1..=NAME_MAX).contains(&n),
        "name",
        "must be between 1 and 100 characters",
    );
    v.check(
        !name.chars().any(char::is_control),
        "name",
        "must not contain control characters",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "Zoë.O'Brien+tag@例え.jp", "x@sub.domain.org"] {
            assert!(email_is_valid(ok), "{ok}");
        }
        for bad in [
            "", "a", "@b.co", "a@b", "a@@b.co", "a b@c.co", "a@.co", "a@b.co.", "a@b\n.co",
        ] {
            assert!(!email_is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn password_length_counts_characters_not_bytes() {
        let mut v = Validator::new();
        check_password(&mut v, "ééééééé"); // 7 characters, 14 bytes
        assert!(v.finish().is_err());
        let mut v = Validator::new();
        check_password(&mut v, "éééééééé");
        assert!(v.finish().is_ok());
    }
}
