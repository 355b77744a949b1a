DROP INDEX spaces_org_name_lower_unique;
ALTER TABLE spaces DROP COLUMN name_lower;
DROP INDEX organizations_name_lower_unique;
ALTER TABLE organizations DROP COLUMN name_lower;
