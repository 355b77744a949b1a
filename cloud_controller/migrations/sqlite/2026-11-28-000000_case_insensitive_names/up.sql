-- Organization names are unique case-insensitively, and space names case-insensitively within
-- their organization, as CC's citext columns make them. `name_lower` holds the name folded by the
-- application (Unicode lower case); the unique indexes on it enforce the rule in the database.
ALTER TABLE organizations ADD COLUMN name_lower TEXT NOT NULL DEFAULT '';
UPDATE organizations SET name_lower = lower(name);
-- Rows created before this rule that differ only in case keep working: every one but the oldest
-- gets a key no real name folds to, so the index can be built and new duplicates are refused.
UPDATE organizations SET name_lower = name_lower || '/' || guid
    WHERE EXISTS (SELECT 1 FROM organizations AS older
                  WHERE older.name_lower = organizations.name_lower AND older.id < organizations.id);
CREATE UNIQUE INDEX organizations_name_lower_unique ON organizations (name_lower);

ALTER TABLE spaces ADD COLUMN name_lower TEXT NOT NULL DEFAULT '';
UPDATE spaces SET name_lower = lower(name);
UPDATE spaces SET name_lower = name_lower || '/' || guid
    WHERE EXISTS (SELECT 1 FROM spaces AS older
                  WHERE older.organization_id = spaces.organization_id
                    AND older.name_lower = spaces.name_lower AND older.id < spaces.id);
CREATE UNIQUE INDEX spaces_org_name_lower_unique ON spaces (organization_id, name_lower);
