DROP TABLE resource_annotations;
DROP TABLE resource_labels;
