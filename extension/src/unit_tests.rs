//! `#[pg_test]` units: each runs inside a transaction of a real backend, so
//! they see the installed SQL exactly as users do.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn one_bool(sql: &str) -> bool {
        Spi::get_one::<bool>(sql)
            .expect("query failed")
            .expect("NULL result")
    }

    #[pg_test]
    fn library_version_matches_crate() {
        assert_eq!(crate::jq_library_version(), env!("CARGO_PKG_VERSION"));
    }

    #[pg_test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        Spi::run(
            "INSERT INTO jobq.job_types (job_type, backoff_base, backoff_max, backoff_jitter)
             VALUES ('b', '1 second', '60 seconds', 0.25)",
        )
        .expect("settings");
        for attempt in 1..=12 {
            let upper = f64::min(60.0, 2f64.powi(attempt - 1));
            let sql = format!(
                "SELECT bool_and(d BETWEEN {lower} AND {upper}) FROM (
                     SELECT extract(epoch FROM jobq._backoff('b', {attempt}))::float8 AS d
                     FROM generate_series(1, 50)) s",
                lower = upper * 0.75 - 1e-6,
                upper = upper + 1e-6,
            );
            assert!(one_bool(&sql), "attempt {attempt} out of bounds");
        }
    }

    #[pg_test]
    fn type_settings_fall_back_to_star_then_built_in() {
        Spi::run("UPDATE jobq.job_types SET max_attempts = 7 WHERE job_type = '*'")
            .expect("update");
        assert!(one_bool(
            "SELECT (jobq._type_settings('unknown')).max_attempts = 7"
        ));
        Spi::run("DELETE FROM jobq.job_types WHERE job_type = '*'").expect("delete");
        assert!(one_bool(
            "SELECT (jobq._type_settings('unknown')).max_attempts = 25"
        ));
    }

    #[pg_test]
    fn lease_deadline_comes_from_the_database_clock() {
        Spi::run("SELECT jobq.jq_enqueue('clocked')").expect("enqueue");
        assert!(one_bool(
            "SELECT locked_until - clock_timestamp() BETWEEN interval '9 seconds' AND interval '10 seconds'
             FROM jobq.jq_grab(ARRAY['clocked'], interval '10 seconds')"
        ));
    }

    #[pg_test(error = "jobq: job 424242 does not exist")]
    fn details_of_unknown_job_is_an_error() {
        Spi::run("SELECT jobq.jq_details(424242)").expect("must raise");
    }

    #[pg_test(error = "jobq: jobs must be a JSON array of job objects, not object")]
    fn enqueue_many_rejects_non_arrays() {
        Spi::run(r#"SELECT jobq.jq_enqueue_many('{"job_type": "x"}')"#).expect("must raise");
    }

    fn tick_sleep_ms() -> i32 {
        Spi::get_one::<i32>("SELECT sleep_ms FROM jobq._wakeup_tick(now())")
            .expect("tick failed")
            .expect("NULL sleep")
    }

    #[pg_test]
    fn wakeup_tick_sleeps_until_the_next_due_time_and_at_most_a_second() {
        assert_eq!(
            tick_sleep_ms(),
            1000,
            "nothing scheduled: the longest sleep, not a spin"
        );
        Spi::run(
            "SELECT jobq.jq_enqueue('later', run_at => clock_timestamp() + interval '1 hour')",
        )
        .expect("enqueue");
        assert_eq!(tick_sleep_ms(), 1000);
        Spi::run("SELECT jobq.jq_enqueue('soon', run_at => clock_timestamp() + interval '300 ms')")
            .expect("enqueue");
        let soon = tick_sleep_ms();
        assert!(
            (1..=300).contains(&soon),
            "slept {soon} ms for a job due in 300 ms"
        );
    }

    #[pg_test]
    fn the_wal_flush_stops_at_a_page_boundary_when_the_next_header_is_not_written() {
        use crate::durability::end_of_inserted_wal;
        // SAFETY: a GUC set at server start.
        let segment = u64::try_from(unsafe { pg_sys::wal_segment_size }).expect("segment size");
        assert_eq!(end_of_inserted_wal(8192 + 24), 8192);
        assert_eq!(end_of_inserted_wal(3 * segment + 40), 3 * segment);
        assert_eq!(end_of_inserted_wal(8192 + 200), 8192 + 200);
        assert_eq!(
            end_of_inserted_wal(3 * segment + 8192 + 40),
            3 * segment + 8192 + 40
        );
    }

    #[pg_test]
    fn flushing_the_wal_works_wherever_the_insert_position_is() {
        // Records of many sizes: some end exactly at the end of a page, where
        // the insert position lies past the next page's unwritten header.
        Spi::run("CREATE TABLE flush_probe (t text)").expect("table");
        for n in 0..3000 {
            Spi::run(&format!(
                "INSERT INTO flush_probe VALUES (repeat('x', {}))",
                (n * 37) % 700
            ))
            .expect("insert");
            Spi::run("SELECT jobq._flush_wal()").expect("flush");
        }
    }
}
