"""Operations: scheduled job runs, "run now" requests, scheduler instances, health, backups."""
