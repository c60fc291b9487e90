-- The default surveys, installed once on first start (migrations run under an advisory lock, so two
-- replicas starting together install them once). Admins edit them like any other: a new version.
INSERT INTO surveys (survey_id, version, kind, name, questions, every_days, created_by) VALUES
('default-session', 1, 'session', 'After a session', '[
  {"question_id": "rating", "text": "How useful was this session?", "measure": "session_rating",
   "scale_min": 1, "scale_max": 5, "asked_of": ["mentor", "mentee", "peer"]}
]', NULL, 'defaults'),
('default-checkin', 1, 'checkin', 'Regular check-in', '[
  {"question_id": "mentor-helps", "text": "My mentor gives me the help I need.", "measure": "mentor_helps",
   "scale_min": 1, "scale_max": 5, "asked_of": ["mentee"]},
  {"question_id": "mentee-engaged", "text": "My mentee uses the opportunity fully.", "measure": "mentee_engaged",
   "scale_min": 1, "scale_max": 5, "asked_of": ["mentor"]},
  {"question_id": "pairing-fit", "text": "We are a good fit for each other.", "measure": "pairing_fit",
   "scale_min": 1, "scale_max": 5, "asked_of": ["mentor", "mentee", "peer"]}
]', 30, 'defaults'),
('default-program', 1, 'program', 'At the end of the relationship', '[
  {"question_id": "recommend", "text": "Would you recommend the program to a colleague?",
   "measure": "would_recommend", "scale_min": 0, "scale_max": 10, "asked_of": ["mentor", "mentee", "peer"]}
]', NULL, 'defaults')
ON CONFLICT DO NOTHING;
