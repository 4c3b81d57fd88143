// Every operation the page runs: only the public GraphQL API (schema.graphql).
import { gql } from 'urql';

export const CONVERSATION_FIELDS = gql`
  fragment ConversationFields on Conversation {
    id
    phoneNumber
    status
    unreadCount
    isStarred
    isArchived
    snoozedUntil
    waitingSince
    lastMessageAt
    lastMessage { id body direction }
    contact { id firstName lastName isOptedIn isTextable }
    assignee { id name email }
  }
`;

export const MESSAGE_FIELDS = gql`
  fragment MessageFields on Message {
    id
    cursor
    body
    direction
    status
    createdAt
    sendAt
    segments
    encoding
    errorCode
    failureCode
    sentiment
    category
    requiresResponse
    optOutDetected
    mediaUrls
    links { shortUrl url clicks }
    sentBy { id name }
  }
`;

export const VIEWER = gql`
  query Viewer {
    viewer { role user { id name email } }
    organization { id name members { role user { id name email } } }
    savedReplies { id name body }
  }
`;

export const COUNTS = gql`
  query Counts($search: String) {
    counts: conversationCounts(filter: { search: $search }) { all unread waiting mine unassigned open pending resolved snoozed }
    starred: conversationCounts(filter: { search: $search, starred: true }) { all }
    archived: conversationCounts(filter: { search: $search, archived: true }) { all }
  }
`;

export const CONVERSATIONS = gql`
  query Conversations($filter: ConversationFilter, $orderBy: ConversationOrder, $first: Int, $after: String) {
    conversations(filter: $filter, orderBy: $orderBy, first: $first, after: $after) {
      edges { cursor node { ...ConversationFields } }
      pageInfo { hasNextPage endCursor }
    }
  }
  ${CONVERSATION_FIELDS}
`;

export const CONVERSATION_UPDATED = gql`
  subscription ConversationUpdated { conversationUpdated { ...ConversationFields } }
  ${CONVERSATION_FIELDS}
`;

export const THREAD = gql`
  query Thread($phoneNumber: String!, $first: Int, $after: String) {
    conversation(phoneNumber: $phoneNumber) {
      ...ConversationFields
      scheduledReplies { ...MessageFields }
      timeline(first: $first, after: $after) {
        edges {
          cursor
          node {
            __typename
            ... on Message { ...MessageFields }
            ... on Note { id body createdAt author { id name } }
          }
        }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
  ${CONVERSATION_FIELDS}
  ${MESSAGE_FIELDS}
`;

export const MESSAGE_RECEIVED = gql`
  subscription MessageReceived($phoneNumber: String!, $after: String) {
    messageReceived(phoneNumber: $phoneNumber, after: $after) { ...MessageFields }
  }
  ${MESSAGE_FIELDS}
`;

export const MESSAGE_STATUS = gql`
  subscription MessageStatus($phoneNumber: String!) {
    messageStatusChanged(phoneNumber: $phoneNumber) { ...MessageFields }
  }
  ${MESSAGE_FIELDS}
`;

export const NOTE_ADDED = gql`
  subscription NoteAdded($phoneNumber: String!) {
    noteAdded(phoneNumber: $phoneNumber) { id body createdAt author { id name } }
  }
`;

export const PREVIEW = gql`
  query Preview($input: SendReplyInput!) {
    previewReply(input: $input) { text encoding segments credits route error { code message } }
  }
`;

export const SEND = gql`
  mutation Send($input: SendReplyInput!) {
    sendReply(input: $input) {
      __typename
      ... on SendReplyPayload { message { ...MessageFields } }
      ... on Error { code errorMessage: message }
    }
  }
  ${MESSAGE_FIELDS}
`;

export const ADD_NOTE = gql`
  mutation AddNote($input: AddNoteInput!) {
    addNote(input: $input) { __typename ... on Note { id body createdAt author { id name } } ... on Error { code message } }
  }
`;

export const CANCEL_SCHEDULED = gql`
  mutation CancelScheduled($id: ID!) { cancelScheduledReply(id: $id) { ...MessageFields } }
  ${MESSAGE_FIELDS}
`;

export const SET_STATUS = gql`
  mutation SetStatus($phoneNumber: String!, $status: ConversationStatus!, $snoozedUntil: DateTime) {
    setConversationStatus(phoneNumber: $phoneNumber, status: $status, snoozedUntil: $snoozedUntil) { ...ConversationFields }
  }
  ${CONVERSATION_FIELDS}
`;

export const ASSIGN = gql`
  mutation Assign($phoneNumber: String!, $userId: ID) {
    assignConversation(phoneNumber: $phoneNumber, userId: $userId) { ...ConversationFields }
  }
  ${CONVERSATION_FIELDS}
`;

export const STAR = gql`
  mutation Star($phoneNumber: String!, $starred: Boolean!) {
    setConversationStarred(phoneNumber: $phoneNumber, starred: $starred) { ...ConversationFields }
  }
  ${CONVERSATION_FIELDS}
`;

export const ARCHIVE = gql`
  mutation Archive($phoneNumber: String!, $archived: Boolean!) {
    setConversationArchived(phoneNumber: $phoneNumber, archived: $archived) { ...ConversationFields }
  }
  ${CONVERSATION_FIELDS}
`;

export const MARK_READ = gql`
  mutation MarkRead($phoneNumber: String!) { markConversationRead(phoneNumber: $phoneNumber) { ...ConversationFields } }
  ${CONVERSATION_FIELDS}
`;

export const CONVERSATION = gql`
  query Conversation($phoneNumber: String!) { conversation(phoneNumber: $phoneNumber) { ...ConversationFields } }
  ${CONVERSATION_FIELDS}
`;
