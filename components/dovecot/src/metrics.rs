//! Dovecot's OpenMetrics definitions, served on port 3904 when `mtail_address` is set.

use serde::Serialize;

/// One `metric` block of dovecot.conf.
#[derive(Debug, Serialize)]
pub struct Metric {
    pub name: &'static str,
    pub filter: &'static str,
    pub fields: &'static str,
    pub group_by: &'static str,
}

const fn metric(
    name: &'static str,
    filter: &'static str,
    fields: &'static str,
    group_by: &'static str,
) -> Metric {
    Metric {
        name,
        filter,
        fields,
        group_by,
    }
}

const IDLE: &str = "event=imap_command_finished AND cmd_name=IDLE";
const UNHIBERNATED: &str = "event=imap_client_unhibernated";
const AUTH: &str = "event=auth_request_finished";
const MASTER_LOGIN: &str = "event=auth_master_client_login_finished";
const DELIVERY: &str = "event=mail_delivery_finished";

pub static METRICS: &[Metric] = &[
    metric(
        "imap_command",
        "event=imap_command_finished",
        "bytes_in bytes_out lock_wait_usecs running_usecs",
        "cmd_name tagged_reply_state",
    ),
    metric(
        "imap_command_duration",
        "event=imap_command_finished",
        "",
        "cmd_name duration:exponential:1:8:10",
    ),
    metric(
        "imap_command_slow",
        "event=imap_command_finished AND duration>1000000 AND NOT cmd_name=IDLE",
        "",
        "cmd_name",
    ),
    metric(
        "imap_idle",
        IDLE,
        "bytes_in bytes_out running_usecs",
        "tagged_reply_state",
    ),
    metric(
        "imap_idle_duration",
        IDLE,
        "",
        "duration:exponential:5:11:10",
    ),
    metric("imap_idle_commands", IDLE, "", "tagged_reply_state"),
    metric(
        "imap_idle_failed",
        "event=imap_command_finished AND cmd_name=IDLE AND NOT tagged_reply_state=OK",
        "",
        "",
    ),
    metric("imap_hibernated", "event=imap_client_hibernated", "", ""),
    metric(
        "imap_hibernated_failed",
        "event=imap_client_hibernated AND error=*",
        "",
        "",
    ),
    metric("imap_unhibernated", UNHIBERNATED, "hibernation_usecs", ""),
    metric(
        "imap_unhibernated_reason",
        UNHIBERNATED,
        "hibernation_usecs",
        "reason",
    ),
    metric(
        "imap_unhibernated_reason_sleep",
        UNHIBERNATED,
        "",
        "reason hibernation_usecs:exponential:4:8:10",
    ),
    metric(
        "imap_unhibernated_failed",
        "event=imap_client_unhibernated AND error=*",
        "",
        "",
    ),
    metric(
        "imap_hibernation_duration",
        UNHIBERNATED,
        "",
        "reason duration:exponential:5:11:10",
    ),
    metric("auth_request", AUTH, "", "success"),
    metric(
        "auth_request_duration",
        AUTH,
        "",
        "success duration:exponential:2:6:10",
    ),
    metric(
        "auth_failed",
        "event=auth_request_finished AND success=no",
        "",
        "",
    ),
    metric(
        "auth_passdb",
        "event=auth_passdb_request_finished",
        "",
        "result cache",
    ),
    metric("auth_master_login", MASTER_LOGIN, "", ""),
    metric(
        "auth_master_login_failed",
        "event=auth_master_client_login_finished AND error=*",
        "",
        "",
    ),
    metric("mail_delivery", DELIVERY, "", ""),
    metric(
        "mail_delivery_duration",
        DELIVERY,
        "",
        "duration:exponential:3:7:10",
    ),
    metric(
        "mail_delivery_failed",
        "event=mail_delivery_finished AND error=*",
        "",
        "",
    ),
    metric(
        "client_connected",
        "event=client_connection_connected AND category=\"service:imap\"",
        "",
        "",
    ),
    metric(
        "client_disconnected",
        "event=client_connection_disconnected AND category=\"service:imap\"",
        "bytes_in bytes_out",
        "",
    ),
];
