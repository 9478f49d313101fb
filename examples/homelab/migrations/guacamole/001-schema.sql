-- Guacamole's schema (abridged for the example): applied once, as the owner.
CREATE TABLE guacamole_connection_group (
  connection_group_id serial PRIMARY KEY,
  connection_group_name varchar(128) NOT NULL
);
