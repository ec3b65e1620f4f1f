//! `batch/v1` CronJob validation (`ValidateCronJobCreate`, `ValidateCronJobUpdate`), as v1.35
//! with its paths and messages; the schedule grammar and time zones are in [`super::cron`].

use podvisor_core::batchv1::{CronJob, CronJobSpec};

use super::batch::job_spec_errors;
use super::cron::{load_location, parse_schedule};
use super::field::{FieldError, Path, ValidationErrors, Value, Warning};
use super::format;
use super::meta::{NameRule, validate_object_meta};
use super::pod::{Errs, s};
use super::template::{non_negative, selector_value, template_warnings, validate_meta_update};

/// CronJob names leave room for the 11-character `-<timestamp>` suffix of their Jobs.
const MAX_CRON_JOB_NAME: usize = 52;

fn cron_job_spec_errors(spec: &CronJobSpec, old: Option<&CronJobSpec>, errs: &mut Errs) {
    let path = Path::root("spec");
    let sp = path.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(sp.as_str(), ""));
    } else {
        let allow_tz = old.is_some_and(|o| o.schedule.contains("TZ"));
        if let Err(e) = parse_schedule(&spec.schedule) {
            errs.push(FieldError::invalid(sp.as_str(), Value::str(&spec.schedule), e));
        }
        let has_tz = spec.schedule.contains("TZ");
        if allow_tz && has_tz && spec.time_zone.is_some() {
            errs.push(FieldError::invalid(
                sp.as_str(),
                Value::str(&spec.schedule),
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            ));
        } else if !allow_tz && has_tz {
            errs.push(FieldError::invalid(
                sp.as_str(),
                Value::str(&spec.schedule),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    if let Some(d) = spec.starting_deadline_seconds {
        non_negative(d, &path.child("startingDeadlineSeconds"), errs);
    }
    if old.is_none_or(|o| o.time_zone != spec.time_zone)
        && let Some(tz) = &spec.time_zone
    {
        validate_time_zone(tz, &path.child("timeZone"), errs);
    }
    let cp = path.child("concurrencyPolicy");
    match s(&spec.concurrency_policy) {
        "Allow" | "Forbid" | "Replace" => {}
        "" => errs.push(FieldError::required(cp.as_str(), "")),
        other => errs.push(FieldError::not_supported(
            cp.as_str(),
            Value::str(other),
            &["Allow", "Forbid", "Replace"],
        )),
    }
    let jp = path.child("jobTemplate").child("spec");
    let job_spec = spec.job_template.spec.clone().unwrap_or_default();
    job_spec_errors(&job_spec, &jp, errs);
    if let Some(sel) = &job_spec.selector {
        errs.push(FieldError::invalid(
            jp.child("selector").as_str(),
            selector_value(Some(sel)),
            "`selector` will be auto-generated",
        ));
    }
    if job_spec.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            jp.child("manualSelector").as_str(),
            Value::raw("true"),
            &["nil", "false"],
        ));
    }
    for (field, v) in [
        ("successfulJobsHistoryLimit", spec.successful_jobs_history_limit),
        ("failedJobsHistoryLimit", spec.failed_jobs_history_limit),
    ] {
        if let Some(v) = v {
            non_negative(i64::from(v), &path.child(field), errs);
        }
    }
}

/// `validateTimeZone`.
fn validate_time_zone(tz: &str, path: &Path, errs: &mut Errs) {
    if tz.is_empty() {
        errs.push(FieldError::invalid(
            path.as_str(),
            Value::str(tz),
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let part_ok = |part: &str| {
        part != "."
            && part != ".."
            && !part.starts_with('-')
            && (1..=14).contains(&part.len())
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
    };
    if !tz.split('/').all(part_ok) {
        errs.push(FieldError::invalid(
            path.as_str(),
            Value::str(tz),
            format!("unknown time zone {tz}"),
        ));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path.as_str(),
            Value::str(tz),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    }
    if let Err(e) = load_location(tz) {
        errs.push(FieldError::invalid(path.as_str(), Value::str(tz), e));
    }
}

fn cron_job_spec(cj: &CronJob) -> std::borrow::Cow<'_, CronJobSpec> {
    cj.spec
        .as_ref()
        .map_or_else(Default::default, std::borrow::Cow::Borrowed)
}

fn cron_job_warnings(spec: &CronJobSpec) -> Vec<Warning> {
    spec.job_template
        .spec
        .as_ref()
        .map(|s| {
            template_warnings(
                &s.template,
                &Path::root("spec")
                    .child("jobTemplate")
                    .child("spec")
                    .child("template"),
            )
        })
        .unwrap_or_default()
}

/// Validates a CronJob on create (`ValidateCronJobCreate`): the name leaves room for the Jobs'
/// suffix (at most 52 characters), the schedule parses (see the module `cron`), the time zone
/// exists, and the job template is a valid Job spec without a selector.
pub fn validate_cron_job(cj: &CronJob) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_object_meta(
        &cj.metadata,
        NameRule::Dns1123Subdomain,
        &Path::root("metadata"),
        &mut errs,
    );
    let spec = cron_job_spec(cj);
    cron_job_spec_errors(&spec, None, &mut errs);
    let name = cj.metadata.name.as_deref().unwrap_or("");
    if name.len() > MAX_CRON_JOB_NAME {
        errs.push(FieldError::invalid(
            "metadata.name",
            Value::str(name),
            format::max_len_error(MAX_CRON_JOB_NAME),
        ));
    }
    ValidationErrors::new(errs).into_result(cron_job_warnings(&spec))
}

/// Validates a CronJob update (`ValidateCronJobUpdate`): as on create but without the name
/// length limit; a schedule that already used `TZ=` may keep it (not with `timeZone`); the
/// time zone is only checked when it changes.
pub fn validate_cron_job_update(old: &CronJob, new: &CronJob) -> Result<Vec<Warning>, ValidationErrors> {
    let mut errs = Vec::new();
    validate_meta_update(&old.metadata, &new.metadata, &mut errs);
    let (old_spec, spec) = (cron_job_spec(old), cron_job_spec(new));
    cron_job_spec_errors(&spec, Some(&old_spec), &mut errs);
    ValidationErrors::new(errs).into_result(cron_job_warnings(&spec))
}
