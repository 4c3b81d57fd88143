// Message bodies for the benchmark dataset: what a two-way SMS inbox holds. GSM-7 and Unicode
// (accents outside GSM-7, emoji, CJK), links, long multi-segment texts, media-only MMS.

export const INBOUND_BODIES = [
  "Yes I'll be there!",
  'What time does it start?',
  'Can I bring a friend?',
  'Sounds great, see you there!',
  'ok thanks',
  'Who is this?',
  'I moved, my new address is 42 Oak St, Apt 3B. Please update it so the packet goes to the right place.',
  "This is the third time I've asked and nobody called me back. Really frustrating.",
  'Thank you so much, this was really helpful 🙏',
  'Running 10 min late',
  'Is parking available?',
  '👍',
  'Not this week, sorry',
  'Where do I sign up?',
  'Love it!',
  'Can you send me the link again?',
  'Please call me after 5',
  "I'm not happy with how this was handled.",
  'Perfect, thank you!',
  '¿Tienen información en español? Mi mamá no habla inglés.',
  'Sí, allí estaré mañana a las 6. ¡Gracias!',
  'Here is a photo of the flyer',
  'Got it',
  'STOP',
  'HELP',
  'Is this still happening on Saturday? The weather looks bad and I want to know before I drive an hour to get there. Also, is there food?',
  'My daughter will come instead of me, is that ok? 😊',
  'Check this out https://maps.app.goo.gl/xyz123 is that the right place?',
  '谢谢，我会准时到。',
  'Can you call me at (919) 555-0142?',
  'Which entrance do we use?',
  'nope',
  "I already voted by mail, don't text me about it again please",
  'Great job today everyone! 🎉🎉',
  'Could I get a ride? I do not have a car right now.',
  'How much does it cost?',
] as const;

export const OUTBOUND_BODIES = [
  'Hi, this is the Riverside Community Center. Are you still able to make it to the meeting on Thursday at 6pm?',
  "We're looking for volunteers this Saturday, can you help out for a couple of hours?",
  'Early voting starts Monday, polls are open 8am-7pm. Do you have a plan to vote? Find your polling place: https://vote.example.org/where',
  'Your appointment is confirmed for tomorrow at 10:30. Reply if you need to reschedule.',
  "Thanks for signing up! Here's what's coming up: https://example.org/events",
  "Thanks! We'll save you a seat.",
  "Here's the sign-up link: https://example.org/volunteer",
  "Got it, I've updated your details.",
  "We're sorry to hear that. Someone from our team will call you today.",
  'Could you share a good time to talk this week?',
  'Great news — your application was approved! 🎉',
  'Parking is free in the lot behind the building.',
  'Doors open at 5:30, the program starts at 6.',
  'Of course, friends and family are welcome!',
  "No problem at all, we'll catch you next time.",
  'Here is the agenda: https://example.org/agenda.pdf',
  'Just checking in, did you get the packet we mailed?',
  'You’re all set. See you soon!',
  'Sí, tenemos materiales en español: https://example.org/es',
  'Reminder: the food drive is this Saturday from 9am to 1pm at 1200 Main St. Bring non-perishable items (canned goods, pasta, rice, cereal). Volunteers please arrive by 8:30 to help set up. Questions? Reply to this message or call (919) 555-0100. Thank you for supporting your neighbors!',
  'Use the side entrance on Elm St [the front is under construction].',
  'We can arrange a ride. What address should the driver pick you up at?',
  'The event is free, no tickets needed.',
  'Thank you for letting us know. You will not receive further messages.',
  'Reply HELP for help, STOP to opt out. Msg & data rates may apply.',
  'Here is the flyer for next week 📎',
] as const;

/** Media URLs as Twilio serves inbound MMS, and as an organization links outbound media. */
export const MEDIA_HOSTS = {
  inbound: 'https://api.twilio.com/2010-04-01/Accounts/AC0000000000000000000000000000bench/Messages',
  outbound: 'https://media.example.org/outbound',
};

export const FIRST_NAMES = [
  'Jane', 'John', 'Maria', 'Wei', 'Aisha', 'Carlos', 'Emily', 'Mohammed', 'Sofia', 'James', 'Priya', 'Luis',
  'Olivia', 'Noah', 'Fatima', 'Liam', 'Chen', 'Ava', 'Diego', 'Grace', 'Kwame', 'Hannah', 'José', 'Mia',
  'Daniel', 'Zoë', 'Ethan', 'Amara', 'Lucas', 'Chloé', 'Ben', 'Yuki',
];
export const LAST_NAMES = [
  'Smith', 'Johnson', 'Garcia', 'Nguyen', 'Williams', 'Brown', 'Martinez', 'Lee', 'Davis', 'Rodriguez',
  'Wilson', 'Anderson', 'Thomas', 'Taylor', 'Moore', 'Jackson', 'Patel', 'Kim', 'Hernández', 'Okafor',
  "O'Brien", 'Müller', 'Cohen', 'Rossi', 'Silva', 'Khan', 'Wang', 'Dubois',
];
