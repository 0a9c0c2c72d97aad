//! Mapping sqlx and PostgreSQL errors to [`StoreError`], by SQLSTATE code and error kind — never
//! by message text, which changes with the server's version and `lc_messages`.

use herald_core::StoreError;

/// Whether an error belongs to the data of one append rather than to the connection or server:
/// SQLSTATE class 22 (data exception: a value PostgreSQL cannot store) or 23 (integrity
/// constraint violation, e.g. an event id recorded before), or a value sqlx could not encode.
/// Such an error fails a group-commit transaction as a whole, so the writer retries its streams
/// one by one to pin it on the append that caused it.
pub(crate) fn is_data_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(sqlstate_class(db.code().as_deref()), Some("22" | "23"))
        }
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// The [`StoreError`] for a failed operation; `what` names the operation for the message.
pub(crate) fn classify(what: &str, e: sqlx::Error) -> StoreError {
    let message = match &e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{what}: {e} (SQLSTATE {code})"),
            None => format!("{what}: {e}"),
        },
        _ => format!("{what}: {e}"),
    };
    match &e {
        // Everything else a server can answer — connection exceptions (08), shutdown and
        // cancellation (57), insufficient resources (53), serialization failures and deadlocks
        // (40), lock timeouts (55), a schema dropped under us (42) — may pass on a retry.
        sqlx::Error::Database(_) if is_data_error(&e) => StoreError::Data(message),
        sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::RowNotFound => StoreError::Data(message),
        _ => StoreError::Unavailable(message),
    }
}

fn sqlstate_class(code: Option<&str>) -> Option<&str> {
    code.and_then(|c| c.get(..2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_problems_are_unavailable() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(matches!(
            classify("append", io),
            StoreError::Unavailable(m) if m.starts_with("append: ")
        ));
        assert!(matches!(
            classify("read", sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn undecodable_rows_are_data_errors() {
        assert!(matches!(
            classify("read", sqlx::Error::RowNotFound),
            StoreError::Data(_)
        ));
        assert!(!is_data_error(&sqlx::Error::PoolClosed));
    }

    #[test]
    fn classes_are_the_first_two_characters() {
        assert_eq!(sqlstate_class(Some("23505")), Some("23"));
        assert_eq!(sqlstate_class(Some("2")), None);
        assert_eq!(sqlstate_class(None), None);
    }
}
