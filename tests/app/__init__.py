"""Tests of the clinician's app (SMART on FHIR), against live servers and Chromium."""
