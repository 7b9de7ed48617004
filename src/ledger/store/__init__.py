"""The fact store on PostgreSQL: server, connections, migrations, appends, quarantine."""
