"""Schedules: when each PingSource fires (cron, time zone and DST rule); pure, no I/O."""

from mtping.schedule.cron import (
    CronSchedule,
    ScheduleError,
    TimezoneError,
    parse_schedule,
    validate_timezone,
)

__all__ = ["CronSchedule", "ScheduleError", "TimezoneError", "parse_schedule", "validate_timezone"]
