DROP TABLE processes;
DROP TABLE apps;
