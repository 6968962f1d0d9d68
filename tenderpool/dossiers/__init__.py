"""Response dossiers of consortia: DC1, DC2, capacities, répartition, mémoire, attachments; versions."""
