-- The first connection group (abridged for the example).
INSERT INTO guacamole_connection_group (connection_group_name) VALUES ('ROOT');
